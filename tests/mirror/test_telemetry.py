"""A mirror reports where its client does: each delivery a ``webhook.delivery`` span, each download a
``received.download`` span of its own (a mirror runs for days: no span spans its whole life), and the
bulk outcomes counted."""

from __future__ import annotations

from pathlib import Path

from audian_fax_async import FaxClient
from audian_fax_async.emulator import AdminClient, Emulator
from audian_fax_async.mirror import Mirror

from ..telemetry.conftest import Telemetry, attrs
from .conftest import ACCOUNT_FAXES, delivery
from .test_mirror import eventually, receiver_client


async def test_a_mirror_reports_its_deliveries_and_downloads_to_its_clients_providers(
    mirror_emulator: Emulator, admin: AdminClient, key: str, tmp_path: Path
) -> None:
    otel = Telemetry()
    try:
        async with (
            FaxClient(key, base_url=mirror_emulator.base_url, telemetry=otel.options) as client,
            Mirror(client, tmp_path) as mirror,
            receiver_client(mirror) as http,
        ):
            await mirror.caught_up()
            fax = admin.arrive(key)
            answer = await http.post("/webhook", content=delivery(fax)[0], headers=delivery(fax)[1])
            assert answer.status_code == 200, answer.text
            await eventually(lambda: mirror.status().faxes.complete == ACCOUNT_FAXES + 1, "the delivered fax")
        [received] = otel.spans("webhook.delivery")
        assert attrs(received)["audian.webhook.outcome"] == "handled" and attrs(received)["audian.fax.id"] == fax["id"]
        downloads = otel.spans("received.download")
        assert len(downloads) == ACCOUNT_FAXES + 1 and all(span.parent is None for span in downloads)
        assert otel.spans("received.download_all") == []
        assert otel.total("audian.bulk.outcomes", **{"audian.outcome": "downloaded"}) == ACCOUNT_FAXES + 1
        assert otel.total("audian.webhook.deliveries") == 1
    finally:
        otel.shutdown()
