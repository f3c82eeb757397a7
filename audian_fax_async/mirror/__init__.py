"""The inbox mirror: keep a folder a complete, verified copy of the account's received faxes.

::

    from audian_fax_async import FaxClient
    from audian_fax_async.mirror import Mirror

    async with FaxClient() as client, Mirror(client, "faxes/", after="processed") as mirror:
        app.mount("/fax-mirror", mirror.app)   # POST /fax-mirror/webhook, GET /fax-mirror/healthz
        await mirror.wait_stopping()

Webhooks bring new faxes at once, sweeps from a persisted high-water mark heal what webhooks
missed, and every fax is downloaded once, verified, and never half-written. ``docs/mirror.md``
says what it guarantees and under which assumptions; ``audian-fax mirror DEST`` runs it.
"""

from ._app import MirrorApp
from ._folder import read_status
from ._mirror import Mirror
from ._state import JOURNAL_NAME, LOCK_NAME, STATE_NAME, MirrorState, SweepRecord
from ._status import FaxCounts, MirrorEvent, MirrorEventKind, MirrorStatus, WebhookCounts

__all__ = [
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
]
