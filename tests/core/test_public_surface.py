"""The package's public face: every type a public signature names is importable from the root.

The types are found, not listed: from the type hints of every public method and property of
``FaxClient``, of its resource namespaces and of every class the root exports, followed to the
classes those hints name in turn.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import typing
from collections.abc import Callable, Iterator
from typing import Any

import audian_fax_async
from audian_fax_async import FaxClient

NAMESPACES = ("received", "webhooks", "routing", "numbers")


def _isort_style_key(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 keeps: SCREAMING_CASE constants, then CamelCase classes, then the rest.
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def _is_ours(obj: object) -> bool:
    return isinstance(obj, type) and obj.__module__.split(".", 1)[0] == "audian_fax_async"


def _package_classes() -> dict[str, Any]:
    """Every class defined in the package, by name: what annotations written as strings refer to."""
    found: dict[str, Any] = {}
    for info in pkgutil.walk_packages(audian_fax_async.__path__, "audian_fax_async."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if _is_ours(value):
                found.setdefault(name, value)
    return found


class _Names(dict[str, Any]):
    """Names for evaluating annotations: the module's, the package's classes, then modules by name
    (a dependency imported only under ``TYPE_CHECKING``, such as ``aiohttp``)."""

    def __missing__(self, name: str) -> Any:
        if name in PACKAGE_CLASSES:
            return PACKAGE_CLASSES[name]
        if hasattr(typing, name):
            return getattr(typing, name)
        try:
            return importlib.import_module(name)
        except ImportError:
            raise KeyError(name) from None


PACKAGE_CLASSES = _package_classes()


def _hints(obj: Callable[..., Any] | type, names: dict[str, Any]) -> dict[str, Any]:
    # Names are looked up in ``localns`` first: it holds the module's names, then falls back.
    return typing.get_type_hints(obj, globalns=dict(names), localns=_Names(names), include_extras=True)


def _types_in(hint: object) -> Iterator[type]:
    """The package's classes named by one type hint, however nested (unions, generics, Unpack...)."""
    if _is_ours(hint):
        yield typing.cast(type, hint)
    if isinstance(hint, list | tuple):  # Callable[[A, B], R] has its parameters in a list
        for item in hint:
            yield from _types_in(item)
    for arg in typing.get_args(hint):
        yield from _types_in(arg)


def _own_members(cls: type) -> Iterator[tuple[type, str, Any]]:
    for klass in reversed(cls.__mro__):
        if not _is_ours(klass):
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_") or name in ("__init__", "__aenter__", "__aiter__", "__anext__", "__call__"):
                yield klass, name, value


def signature_types(cls: type) -> set[type]:
    """The package's classes in the public signatures and fields of ``cls``."""
    hints: list[Any] = []
    if not issubclass(cls, BaseException):
        hints.extend(_hints(cls, vars(sys.modules[cls.__module__])).values())  # attrs fields, TypedDict keys
    for klass, _, member in _own_members(cls):
        function = member.fget if isinstance(member, property) else member
        function = getattr(function, "__func__", function)  # classmethod, staticmethod
        if inspect.isfunction(function):
            # The defining class's module: attrs' generated __init__ has globals of its own.
            names = {**function.__globals__, **vars(sys.modules[klass.__module__])}
            hints.extend(_hints(function, names).values())
    found: set[type] = set()
    for hint in hints:
        found.update(_types_in(hint))
    return found


def public_signature_types() -> dict[type, str]:
    """Every class reachable from the client's and the exported classes' signatures, with where seen."""
    client = FaxClient("k", base_url="https://api.test/v2")
    roots: list[type] = [FaxClient, *(type(getattr(client, name)) for name in NAMESPACES)]
    roots += [v for v in (getattr(audian_fax_async, n) for n in audian_fax_async.__all__) if _is_ours(v)]
    seen: dict[type, str] = dict.fromkeys(roots, "a root")
    todo = list(roots)
    while todo:
        cls = todo.pop()
        for found in signature_types(cls):
            if found not in seen:
                seen[found] = cls.__qualname__
                todo.append(found)
    return seen


# -- the tests ---------------------------------------------------------------------------------


def test_every_type_in_a_public_signature_is_exported_from_the_root() -> None:
    reachable = public_signature_types()
    namespaces = {type(getattr(FaxClient("k", base_url="https://api.test/v2"), name)) for name in NAMESPACES}
    missing = sorted(
        f"{cls.__module__}.{cls.__qualname__} (in a signature of {where})"
        for cls, where in reachable.items()
        if cls not in namespaces
        and (cls.__name__ not in audian_fax_async.__all__ or getattr(audian_fax_async, cls.__name__, None) is not cls)
    )
    assert missing == []


NAMED_IN_THE_ISSUE = (
    "BulkDownload",
    "BulkProgress",
    "DocumentStream",
    "DownloadOutcome",
    "DownloadResult",
    "FaxPage",
    "LimiterStatistics",
    "RedisLimiter",
)


def test_the_types_the_issue_names_are_exported_from_the_root() -> None:
    from audian_fax_async.redis import RedisLimiter

    missing = [name for name in NAMED_IN_THE_ISSUE if name not in audian_fax_async.__all__]
    assert missing == []
    assert all(_is_ours(getattr(audian_fax_async, name)) for name in NAMED_IN_THE_ISSUE)
    assert audian_fax_async.RedisLimiter is RedisLimiter


def test_the_signatures_walked_reach_the_types_the_issue_names() -> None:
    # A check of the walk itself: these are named by signatures (of download_all, stream, the
    # limiter, the page and the result types), so the walk must find them.
    names = {cls.__name__ for cls in public_signature_types()}
    assert {"BulkDownload", "DocumentStream", "BulkProgress", "DownloadResult", "DownloadOutcome"} <= names
    assert {"FaxPage", "LimiterStatistics", "ReceivedFax", "RetryPolicy", "DownloadLimiter"} <= names


def test_the_resource_namespaces_are_the_apis_areas() -> None:
    client = FaxClient("k", base_url="https://api.test/v2")
    for name in NAMESPACES:
        namespace = getattr(client, name)
        assert _is_ours(type(namespace)), name
        assert [m for m in dir(namespace) if not m.startswith("_")], f"client.{name} has no public method"


def test_all_is_sorted_and_every_name_in_it_resolves() -> None:
    names = audian_fax_async.__all__

    assert names == sorted(names, key=_isort_style_key)
    assert len(set(names)) == len(names)
    for name in names:
        assert getattr(audian_fax_async, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from audian_fax_async import *", namespace)  # noqa: S102 - the star import is what is tested
    assert set(namespace) - {"__builtins__"} == set(names)


def test_all_is_exactly_the_public_surface_of_the_package() -> None:
    public = {
        name
        for name, value in vars(audian_fax_async).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }

    # Every public name is exported (a stray ``from typing import Any`` would show up here), and
    # ``__all__`` names nothing else (names resolved lazily by a module ``__getattr__`` count).
    assert public - set(audian_fax_async.__all__) == set()
    assert not any(name.startswith("_") and name != "__version__" for name in audian_fax_async.__all__)
    assert not any(inspect.ismodule(getattr(audian_fax_async, name)) for name in audian_fax_async.__all__)
