"""The package's own cattrs converter: JSON dicts to the typed models and back.

Never the global converter. Hooks for datetimes, strict scalars and "enum or raw string" unions are
registered before any class hook is generated. Two converters share one configuration: a fast one
for the happy path and one with detailed validation that only runs to explain a failure, so a bad
record costs a second pass but a good one never pays for error tracking.
"""

from __future__ import annotations

import enum
import types
import typing
from datetime import UTC, datetime
from typing import Any, TypeVar

import cattrs
from cattrs.preconf.json import make_converter

from ._exceptions import ValidationError

__all__ = ["format_datetime", "make_fax_converter", "parse_datetime", "structure", "unstructure"]

T = TypeVar("T")


def parse_datetime(value: object) -> datetime:
    """Parse an ISO 8601 timestamp into an aware UTC datetime (a naive one is taken as UTC)."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an ISO 8601 timestamp: {value!r}") from None
    else:
        raise TypeError(f"expected an ISO 8601 string, got {type(value).__name__}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_datetime(value: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC with ``Z``. A naive datetime is refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: pass a timezone-aware datetime (for example with tzinfo=UTC)")
    utc = value.astimezone(UTC)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def _strict_int(value: object, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _strict_str(value: object, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _strict_bool(value: object, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {type(value).__name__}")
    return value


def _strict_float(value: object, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _enum_or_str(tp: Any) -> type[enum.Enum] | None:
    """For ``SomeEnum | str`` (optionally ``| None``) return ``SomeEnum``, else None."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) != 2 or str not in args:
        return None
    other = args[0] if args[1] is str else args[1]
    if isinstance(other, type) and issubclass(other, enum.Enum):
        return other
    return None


def _make_enum_or_str_hook(tp: Any) -> Any:
    enum_cls = _enum_or_str(tp)
    assert enum_cls is not None
    optional = type(None) in typing.get_args(tp)
    members = {m.value: m for m in enum_cls}

    def hook(value: object, _: Any) -> Any:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {type(value).__name__}")
        return members.get(value, value)

    return hook


def make_fax_converter(*, detailed: bool = False, forbid_extra_keys: bool = False) -> cattrs.Converter:
    """Build a converter configured for the API's records.

    Production code uses the package's converters (unknown keys ignored); tests build a strict one
    with ``forbid_extra_keys=True`` so that drift between the API and the models is noticed.
    """
    conv = make_converter(detailed_validation=detailed, forbid_extra_keys=forbid_extra_keys)
    conv.register_structure_hook(datetime, lambda v, _: parse_datetime(v))
    conv.register_unstructure_hook(datetime, format_datetime)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook_factory(lambda t: _enum_or_str(t) is not None, _make_enum_or_str_hook)
    return conv


_fast = make_fax_converter(detailed=False)
_detailed = make_fax_converter(detailed=True)


def _first_error(exc: BaseException) -> tuple[str, str | None]:
    messages = cattrs.transform_error(exc, path="$") if isinstance(exc, cattrs.BaseValidationError) else []
    if not messages:
        return str(exc) or type(exc).__name__, None
    first = messages[0]
    path = first.rsplit(" @ ", 1)[1] if " @ " in first else None
    return "; ".join(messages[:5]), path


def structure(data: object, cls: type[T]) -> T:
    """Turn decoded JSON into ``cls``; a missing or mistyped field raises :class:`ValidationError`."""
    if not isinstance(data, dict) and hasattr(cls, "__attrs_attrs__"):
        raise ValidationError(
            f"{cls.__name__}: expected a JSON object, got {type(data).__name__}", path="$", model=cls.__name__
        )
    try:
        return _fast.structure(data, cls)
    except Exception:  # noqa: S110 - explained by the detailed pass below
        pass
    try:
        result = _detailed.structure(data, cls)
    except Exception as exc:
        message, path = _first_error(exc)
        raise ValidationError(f"invalid {cls.__name__}: {message}", path=path, model=cls.__name__) from None
    return result  # the fast path's failure was not reproducible: accept the detailed result


def unstructure(obj: object) -> Any:
    """The JSON-ready form of a model."""
    return _fast.unstructure(obj)
