"""Fault decisions: which misbehaviour, if any, a request meets.

Pure logic, no I/O. A scripted fault (queued through the admin API) wins over a random one; random
faults are drawn from a hash of the seed, the account, the route and the request's ordinal on that
(account, route), so a run that makes the same requests sees the same faults.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from attrs import frozen

from ._config import FaultConfig

__all__ = ["ROUTES", "FaultAction", "FaultEngine", "parse_action"]

ROUTES = ("list", "get", "update", "archive", "download", "webhooks", "routing", "numbers")
"""Names of the API routes, as used in scripts and statistics."""

ActionKind = Literal["status", "drop", "truncate", "delay"]


@frozen(kw_only=True)
class FaultAction:
    """One fault: answer with ``status`` (and ``retry_after``), ``drop`` or ``truncate`` the body,
    or ``delay`` by ``seconds`` and then answer normally."""

    kind: ActionKind
    status: int = 0
    retry_after: int | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The admin API's shape of this action."""
        if self.kind == "status":
            out: dict[str, Any] = {"status": self.status}
            if self.retry_after is not None:
                out["retry_after"] = self.retry_after
            return out
        if self.kind == "delay":
            return {"action": "delay", "seconds": self.seconds}
        return {"action": self.kind}


def parse_action(raw: object) -> FaultAction:
    """Parse one scripted response: ``503``, ``"drop"``, ``"truncate"``, ``{"status": 429,
    "retry_after": 2}``, ``{"action": "delay", "seconds": 0.5}``. ``ValueError`` otherwise."""
    if isinstance(raw, bool):
        raise ValueError(f"not a scripted response: {raw!r}")
    if isinstance(raw, int):
        raw = {"status": raw}
    if isinstance(raw, str):
        raw = {"action": raw}
    if not isinstance(raw, Mapping):
        raise ValueError(f"not a scripted response: {raw!r}")
    action = raw.get("action", "status" if "status" in raw else None)
    if action == "status":
        status = raw.get("status")
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {status!r}")
        retry_after = raw.get("retry_after")
        if retry_after is not None and (not isinstance(retry_after, int) or retry_after < 0):
            raise ValueError(f"retry_after must be a non-negative integer, got {retry_after!r}")
        return FaultAction(kind="status", status=status, retry_after=retry_after)
    if action in ("drop", "truncate"):
        return FaultAction(kind=action)
    if action == "delay":
        seconds = raw.get("seconds", 0)
        if not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError(f"delay seconds must be a non-negative number, got {seconds!r}")
        return FaultAction(kind="delay", seconds=float(seconds))
    raise ValueError(f"unknown scripted action {action!r} (status, drop, truncate, delay)")


def _draw(seed: int, key: str, route: str, ordinal: int) -> float:
    digest = hashlib.blake2b(f"{seed}|{key}|{route}|{ordinal}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class FaultEngine:
    """Holds the faults in force and the scripts, and decides each request's fault."""

    def __init__(self, *, seed: int, faults: FaultConfig) -> None:
        self.seed = seed
        self.faults = faults
        # (account key or None for any account, route) -> queued actions, consumed in order.
        self._scripts: dict[tuple[str | None, str], deque[FaultAction]] = defaultdict(deque)
        self._ordinals: dict[tuple[str, str], int] = defaultdict(int)

    def script(self, route: str, actions: Iterable[FaultAction], key: str | None = None) -> None:
        """Queue ``actions`` for the next requests to ``route`` (of account ``key``, or of any)."""
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; known: {', '.join(ROUTES)}")
        self._scripts[(key, route)].extend(actions)

    def pending(self) -> list[dict[str, Any]]:
        """The queued scripted actions, for the admin API."""
        return [
            {"key": key, "route": route, "responses": [a.to_json() for a in queue]}
            for (key, route), queue in self._scripts.items()
            if queue
        ]

    def clear_scripts(self, key: str | None = None, *, everything: bool = False) -> None:
        """Drop the scripts of one account (``key``), the any-account ones, or ``everything``."""
        for script_key in list(self._scripts):
            if everything or script_key[0] == key:
                del self._scripts[script_key]

    def forget_account(self, key: str) -> None:
        """Restart an account's random-fault sequence (after a reset)."""
        for ordinal_key in [k for k in self._ordinals if k[0] == key]:
            del self._ordinals[ordinal_key]

    def forget_all(self) -> None:
        """Restart every account's random-fault sequence."""
        self._ordinals.clear()

    def decide(self, key: str, route: str) -> FaultAction | None:
        """The fault this request meets, or ``None``."""
        for script_key in ((key, route), (None, route)):
            queue = self._scripts.get(script_key)
            if queue:
                return queue.popleft()
        faults = self.faults
        ordinal = self._ordinals[(key, route)]
        self._ordinals[(key, route)] = ordinal + 1
        u = _draw(self.seed, key, route, ordinal)
        edges: list[tuple[float, FaultAction]] = [
            (faults.p500, FaultAction(kind="status", status=500)),
            (faults.p503, FaultAction(kind="status", status=503, retry_after=faults.retry_after)),
            (faults.p429, FaultAction(kind="status", status=429, retry_after=faults.retry_after)),
        ]
        if route == "download":
            # Cutting a body only makes sense where bodies are worth streaming.
            edges += [(faults.drop, FaultAction(kind="drop")), (faults.truncate, FaultAction(kind="truncate"))]
        bound = 0.0
        for probability, action in edges:
            bound += probability
            if u < bound:
                return action
        return None

    def cut_point(self, key: str, fax_id: str, length: int) -> int:
        """Where a dropped body stops: deterministic, strictly inside ``length`` (0 for an empty body)."""
        if length <= 1:
            return 0
        return 1 + int(_draw(self.seed, key, fax_id, length) * (length - 1))
