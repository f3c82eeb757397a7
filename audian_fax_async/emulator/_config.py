"""Configuration of the emulator: faults, named fault profiles and the server's settings.

Everything here is plain data (attrs classes with validation); nothing performs I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from attrs import field, frozen

__all__ = ["PROFILES", "EmulatorConfig", "FaultConfig", "fault_profile"]


def _probability(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability between 0 and 1, got {value!r}")


def _non_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _positive_or_none(_instance: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be > 0 or None, got {value!r}")


@frozen(kw_only=True)
class FaultConfig:
    """Random faults applied to API requests (never to the admin API).

    Each request draws one number, deterministic from the seed, the account, the route and how many
    requests that account made to that route; the probabilities below carve that draw up, so their sum
    must not exceed 1.

    * ``latency``: seconds added before every API response.
    * ``bandwidth``: bytes per second for each download body (``None``: unlimited).
    * ``p500`` / ``p503`` / ``p429``: probability of answering with that status (429 and 503 carry
      ``Retry-After: retry_after``).
    * ``drop``: probability that a download's connection is closed at a random point mid-body.
    * ``truncate``: probability that a download sends only the first half of its ``Content-Length``
      and then closes the connection.
    * ``slow_first_byte``: seconds between a download's headers and its first body byte.

    Example::

        FaultConfig(p503=0.1, latency=0.05)
    """

    latency: float = field(default=0.0, validator=_non_negative)
    bandwidth: int | None = field(default=None, validator=_positive_or_none)
    p500: float = field(default=0.0, validator=_probability)
    p503: float = field(default=0.0, validator=_probability)
    p429: float = field(default=0.0, validator=_probability)
    drop: float = field(default=0.0, validator=_probability)
    truncate: float = field(default=0.0, validator=_probability)
    slow_first_byte: float = field(default=0.0, validator=_non_negative)
    retry_after: int = field(default=1, validator=attrs.validators.ge(0))

    def __attrs_post_init__(self) -> None:
        total = self.p500 + self.p503 + self.p429 + self.drop + self.truncate
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault probabilities add up to {total:.3f}, more than 1")

    def to_json(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dictionary (the admin API's shape)."""
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, base: FaultConfig | None = None) -> FaultConfig:
        """Build from the admin API's shape; ``profile`` names a starting profile, other keys override.

        Unknown keys raise ``ValueError`` so a typo in a test does not silently disable a fault.
        """
        data = dict(data)
        profile = data.pop("profile", None)
        start = fault_profile(profile) if profile is not None else (base or cls())
        known = {a.name for a in attrs.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault option(s): {', '.join(sorted(unknown))}")
        return attrs.evolve(start, **data)


PROFILES: Mapping[str, FaultConfig] = {
    "none": FaultConfig(),
    # A moderate mix of every kind, for soak tests of retry logic.
    "chaos": FaultConfig(
        latency=0.02,
        p500=0.05,
        p503=0.05,
        p429=0.05,
        drop=0.05,
        truncate=0.05,
        slow_first_byte=0.0,
        retry_after=1,
    ),
    # Occasional transient failures only: what a healthy but busy service looks like.
    "flaky": FaultConfig(p503=0.03, p429=0.02, truncate=0.01, retry_after=1),
}
"""Named fault profiles accepted by ``--faults`` and by the admin API's ``profile`` key."""


def fault_profile(name: str) -> FaultConfig:
    """The named profile; ``ValueError`` lists the known names if ``name`` is not one."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown fault profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None


def _key_set(keys: Iterable[str] | None) -> frozenset[str] | None:
    """The accepted API keys as a set; a single string is refused (it would be a set of characters)."""
    if keys is None:
        return None
    if isinstance(keys, str):
        raise ValueError("keys must be a collection of API keys, not one string")
    found = frozenset(keys)
    if not found or any(not isinstance(key, str) or not key.strip() for key in found):
        raise ValueError("keys must be non-empty strings, and at least one")
    return found


@frozen(kw_only=True)
class EmulatorConfig:
    """Settings of one emulator server.

    * ``faxes``: faxes generated for every new account (each API key is its own account).
    * ``seed``: makes faxes, documents and random faults reproducible.
    * ``faults``: the faults in force at start (and after an admin reset).
    * ``max_concurrent_downloads`` / ``retry_after``: the account limit and the ``Retry-After``
      seconds of its 429.
    * ``max_numbers``: fax numbers an account may hold.
    * ``time_scale``: multiplies webhook retry delays (the reference's 24 hours); ``0.0001`` makes
      them about 9 s.
    * ``clock_anchor``: the "now" that generated faxes are dated back from (default: start time).
    * ``document_cache_bytes``: bound of the cache of generated documents.
    * ``admin_key``: if set, the admin API requires header ``X-Admin-Key``.
    * ``keys``: the API keys that exist; any other key is answered 401 (``None``, the default:
      every key is accepted, each its own account).

    Example::

        EmulatorConfig(faxes=500, seed=7, faults=fault_profile("chaos"), keys={"key-a", "key-b"})
    """

    host: str = "127.0.0.1"
    port: int = 0
    faxes: int = field(default=500, validator=attrs.validators.ge(0))
    seed: int = 7
    faults: FaultConfig = field(factory=FaultConfig)
    max_concurrent_downloads: int = field(default=10, validator=attrs.validators.ge(1))
    retry_after: int = field(default=1, validator=attrs.validators.ge(0))
    max_numbers: int = field(default=100, validator=attrs.validators.ge(0))
    time_scale: float = field(default=1.0, validator=_non_negative)
    clock_anchor: dt.datetime | None = None
    document_cache_bytes: int = field(default=256 * 1024 * 1024, validator=attrs.validators.ge(0))
    admin_key: str | None = None
    webhook_timeout: float = field(default=10.0, validator=_non_negative)
    keys: frozenset[str] | None = field(default=None, converter=_key_set)
