"""The emulator's state: accounts (one per API key) and what they hold, generated deterministically.

No I/O here. Faxes are generated on an account's first use from the seed and the key; their
documents are only described (:class:`~._documents.DocumentSpec`), never produced at this point.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import random
import secrets
from collections import Counter, defaultdict
from typing import Any

import anyio
from attrs import define, field

from ._config import EmulatorConfig
from ._documents import DocumentSpec, Layout, build_layout

__all__ = [
    "FAX_STATUSES",
    "Account",
    "Delivery",
    "EmulatorState",
    "Fax",
    "RoutingRule",
    "Webhook",
    "format_datetime",
    "utc_now",
]

FAX_STATUSES = ("received", "processed", "archived")

_FIRST_NAMES = (
    "John", "Maria", "Wei", "Fatima", "Olga", "James", "Aiko", "Carlos", "Priya", "Liam",
    "Noor", "Emma", "Kwame", "Sofia", "Hiro", "Anna",
)  # fmt: skip
_LAST_NAMES = (
    "Smith", "Garcia", "Chen", "Khan", "Ivanova", "Brown", "Tanaka", "Lopez", "Patel", "Murphy",
    "Haddad", "Muller", "Mensah", "Rossi", "Sato", "Novak",
)  # fmt: skip
_COMPANIES = ("Acme Medical", "Northside Clinic", "Harbor Legal LLP", "City Pharmacy", "Blue Ridge Insurance")
_BAUD_RATES = (14400, 9600, 33600, 4800)
_AREA_CODES = ("202", "212", "305", "312", "415", "512", "617", "702", "808", "917")


def utc_now() -> dt.datetime:
    """Now, in UTC, to the second (the API's precision)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def format_datetime(value: dt.datetime) -> str:
    """``2024-02-04T13:15:00Z``: UTC, seconds precision, ``Z``."""
    return value.astimezone(dt.UTC).replace(tzinfo=None, microsecond=0).isoformat() + "Z"


@define(kw_only=True)
class Fax:
    """One received fax. ``document`` describes its PDF; ``layout`` is computed on first need."""

    id: str
    from_number: str
    from_name: str
    to_number: str
    pages: int
    received_at: dt.datetime
    status: str
    duration: int
    baud_rate: int
    created_at: dt.datetime
    document: DocumentSpec
    _layout: Layout | None = field(default=None, alias="_layout")

    @property
    def layout(self) -> Layout:
        """The document's layout (its exact size and ETag), computed once."""
        if self._layout is None:
            self._layout = build_layout(self.document)
        return self._layout

    @property
    def sort_key(self) -> tuple[dt.datetime, str]:
        """Newest first is descending order of this key (ties broken by id)."""
        return (self.received_at, self.id)

    def list_json(self, base_url: str) -> dict[str, Any]:
        """The reference's list item."""
        return {
            "id": self.id,
            "from_number": self.from_number,
            "from_name": self.from_name,
            "to_number": self.to_number,
            "pages": self.pages,
            "received_at": format_datetime(self.received_at),
            "status": self.status,
            "format": "pdf",
            "file_size": self.layout.size,
            "document_url": f"{base_url}/fax/received/{self.id}/download",
            "processed": self.status in ("processed", "archived"),
        }

    def detail_json(self, base_url: str) -> dict[str, Any]:
        """The reference's detail object: the list item plus duration, baud rate and creation time."""
        out = self.list_json(base_url)
        out["duration"] = self.duration
        out["baud_rate"] = self.baud_rate
        out["created_at"] = format_datetime(self.created_at)
        return out


@define(kw_only=True)
class Webhook:
    """A webhook subscription."""

    id: str
    url: str
    events: list[str]
    enabled: bool
    format: str
    created_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        """The API's shape."""
        return {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "enabled": self.enabled,
            "format": self.format,
            "created_at": format_datetime(self.created_at),
        }


@define(kw_only=True)
class RoutingRule:
    """A routing rule (email or webhook destination)."""

    id: str
    type: str
    destination: str
    attach_document: bool
    enabled: bool
    created_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        """The API's shape."""
        return {
            "id": self.id,
            "type": self.type,
            "destination": self.destination,
            "attach_document": self.attach_document,
            "enabled": self.enabled,
            "created_at": format_datetime(self.created_at),
        }


@define(kw_only=True)
class Delivery:
    """One webhook delivery attempt and its outcome."""

    event_id: str
    delivery_id: str
    event: str
    fax_id: str
    url: str
    format: str
    attempt: int
    source: str  # "webhook" or "routing"
    subscription_id: str
    started_at: dt.datetime
    status_code: int | None = None
    error: str | None = None
    outcome: str = "pending"  # "delivered", "failed", "pending"

    def to_json(self) -> dict[str, Any]:
        """The admin API's shape."""
        return {
            "event_id": self.event_id,
            "delivery_id": self.delivery_id,
            "event": self.event,
            "fax_id": self.fax_id,
            "url": self.url,
            "format": self.format,
            "attempt": self.attempt,
            "source": self.source,
            "subscription_id": self.subscription_id,
            "started_at": format_datetime(self.started_at),
            "status_code": self.status_code,
            "error": self.error,
            "outcome": self.outcome,
        }


@define
class Account:
    """Everything one API key owns, plus its statistics."""

    key: str
    faxes: list[Fax]  # ascending by sort_key; listing walks it backwards
    by_id: dict[str, Fax]
    to_number: str
    rng: random.Random
    webhooks: list[Webhook] = field(factory=list)
    routing: list[RoutingRule] = field(factory=list)
    numbers: list[dict[str, Any]] = field(factory=list)
    outbox: list[dict[str, Any]] = field(factory=list)
    deliveries: list[Delivery] = field(factory=list)
    requests: defaultdict[str, Counter[int]] = field(factory=lambda: defaultdict(Counter))
    downloads_current: int = 0
    downloads_highest: int = 0
    downloads_refused: int = 0
    bytes_served: int = 0
    arrival_stream: anyio.CancelScope | None = None
    # Background work of this account (deliveries, arrival streams), cancelled on reset.
    scopes: set[anyio.CancelScope] = field(factory=set)
    _serial: int = 0

    def add_fax(self, fax: Fax) -> None:
        """Insert keeping the order; a fax id must be new."""
        if fax.id in self.by_id:
            raise ValueError(f"fax {fax.id} already exists")
        bisect.insort(self.faxes, fax, key=lambda f: f.sort_key)
        self.by_id[fax.id] = fax

    def next_id(self, prefix: str) -> str:
        """A new id such as ``wh_...``: unique in the account and stable for a given history."""
        self._serial += 1
        return f"{prefix}_{self.rng.getrandbits(48):012x}{self._serial:04d}"

    def stats_json(self) -> dict[str, Any]:
        """The admin API's statistics of this account."""
        outcomes = Counter(d.outcome for d in self.deliveries)
        return {
            "key": self.key,
            "faxes": len(self.faxes),
            "requests": {route: {str(k): v for k, v in sorted(c.items())} for route, c in self.requests.items()},
            "downloads": {
                "current": self.downloads_current,
                "highest": self.downloads_highest,
                "refused": self.downloads_refused,
            },
            "bytes_served": self.bytes_served,
            "webhook_deliveries": {
                "attempts": len(self.deliveries),
                "delivered": outcomes["delivered"],
                "failed": outcomes["failed"],
                "pending": outcomes["pending"],
            },
            "webhooks": len(self.webhooks),
            "routing_rules": len(self.routing),
            "numbers": len(self.numbers),
            "outbox": len(self.outbox),
        }


def _phone(rng: random.Random, area: str | None = None) -> str:
    area = area or rng.choice(_AREA_CODES)
    return f"+1{area}{rng.randrange(2_000_000, 10_000_000):07d}"


class FaxFactory:
    """Makes faxes from a random generator; shared by account generation and arrivals."""

    def __init__(self, rng: random.Random, to_number: str) -> None:
        self.rng = rng
        self.to_number = to_number

    def make(self, received_at: dt.datetime, *, status: str = "received", **overrides: Any) -> Fax:
        """A plausible fax received at ``received_at``; keyword arguments override generated fields.

        ``size`` (bytes) asks for a document of exactly that length.
        """
        rng = self.rng
        pages = int(overrides.pop("pages", 0)) or rng.choice((1, 1, 2, 2, 3, 3, 4, 5, 6, 8, 10, 12))
        fax_id = overrides.pop("id", None) or f"fax_received_{rng.getrandbits(64):016x}"
        name = rng.choice(_FIRST_NAMES) + " " + rng.choice(_LAST_NAMES)
        if rng.random() < 0.2:
            name = rng.choice(_COMPANIES)
        size = overrides.pop("size", None)
        salt = rng.getrandbits(32)
        if size is not None:
            spec = DocumentSpec(fax_id=fax_id, pages=pages, salt=salt, size=int(size))
        else:
            heights = tuple(rng.randrange(270, 330) for _ in range(pages))
            spec = DocumentSpec(fax_id=fax_id, pages=pages, salt=salt, image_heights=heights)
        duration = pages * rng.randrange(8, 16) + rng.randrange(3, 12)
        fields: dict[str, Any] = {
            "id": fax_id,
            "from_number": _phone(rng),
            "from_name": name,
            "to_number": self.to_number,
            "pages": pages,
            "received_at": received_at,
            "status": status,
            "duration": duration,
            "baud_rate": rng.choice(_BAUD_RATES),
            "created_at": received_at,
            "document": spec,
        }
        fields.update(overrides)
        return Fax(**fields)


class EmulatorState:
    """All accounts, created lazily by key, and the server-wide settings they are generated from."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.anchor = (config.clock_anchor or utc_now()).astimezone(dt.UTC).replace(microsecond=0)
        self.accounts: dict[str, Account] = {}
        self.unauthenticated: Counter[int] = Counter()

    def account(self, key: str) -> Account:
        """The account of ``key``, generated on first use."""
        account = self.accounts.get(key)
        if account is None:
            account = self._generate(key)
            self.accounts[key] = account
        return account

    def factory(self, account: Account) -> FaxFactory:
        """A fax factory drawing from the account's generator."""
        return FaxFactory(account.rng, account.to_number)

    def _generate(self, key: str) -> Account:
        digest = hashlib.sha256(f"{self.config.seed}|{key}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:16], "big"))
        to_number = _phone(rng, "555")
        factory = FaxFactory(rng, to_number)
        window = 90 * 24 * 3600
        faxes: list[Fax] = []
        previous: dt.datetime | None = None
        for index in range(self.config.faxes):
            if previous is not None and (index % 25 in (1, 2) or rng.random() < 0.08):
                # Deliberate ties (at least three faxes in one second per 25, more at random) exercise
                # pagination's tie-break.
                received_at = previous
            else:
                received_at = self.anchor - dt.timedelta(seconds=rng.randrange(60, window))
            previous = received_at
            roll = rng.random()
            status = "received" if roll < 0.7 else "processed" if roll < 0.9 else "archived"
            faxes.append(factory.make(received_at, status=status))
        by_id = {f.id: f for f in faxes}
        if len(by_id) != len(faxes):  # pragma: no cover - 64-bit ids colliding
            raise RuntimeError("generated fax ids collide")
        faxes.sort(key=lambda f: f.sort_key)
        return Account(key=key, faxes=faxes, by_id=by_id, to_number=to_number, rng=rng)

    def drop(self, key: str | None = None) -> None:
        """Forget one account (regenerated from the seed on next use) or all; cancels their background work."""
        keys = list(self.accounts) if key is None else [key]
        for k in keys:
            account = self.accounts.pop(k, None)
            if account is not None:
                for scope in list(account.scopes):
                    scope.cancel()
        if key is None:
            self.unauthenticated.clear()


def new_request_id() -> str:
    """A unique request id."""
    return "req_" + secrets.token_hex(12)
