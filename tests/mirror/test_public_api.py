"""The public face of ``audian_fax_async.mirror``: exactly the curated names, documented, and every
type its public signatures name importable from it, the package root or ``webhooks``."""

from __future__ import annotations

import inspect

import audian_fax_async
import audian_fax_async.mirror as mirror
import audian_fax_async.webhooks as webhooks
from tests.core.test_public_surface import signature_types

PUBLIC = {
    "JOURNAL_NAME",
    "LOCK_NAME",
    "STATE_NAME",
    "FaxCounts",
    "Mirror",
    "MirrorApp",
    "MirrorEvent",
    "MirrorEventKind",
    "MirrorState",
    "MirrorStatus",
    "SweepRecord",
    "WebhookCounts",
    "read_status",
}


def test_all_is_exactly_the_public_surface() -> None:
    assert set(mirror.__all__) == PUBLIC and len(mirror.__all__) == len(PUBLIC)
    exported = {name for name in dir(mirror) if name.isidentifier() and not name.startswith("_")}
    assert exported == PUBLIC


def test_every_public_class_and_function_has_a_docstring() -> None:
    for name in mirror.__all__:
        obj = getattr(mirror, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), name


def test_every_type_in_a_public_signature_is_importable() -> None:
    public = {
        getattr(module, name)
        for module in (mirror, audian_fax_async, webhooks)
        for name in module.__all__
        if inspect.isclass(getattr(module, name, None))
    }
    roots = [getattr(mirror, name) for name in mirror.__all__ if inspect.isclass(getattr(mirror, name))]
    reached = set().union(*(signature_types(cls) for cls in roots))
    names = {cls.__name__ for cls in reached}
    assert {"FaxClient", "IdempotencyStore", "MirrorEvent", "MirrorStatus", "SweepRecord"} <= names  # the walk works
    assert {f"{cls.__module__}.{cls.__qualname__}" for cls in reached - public} == set()
