"""An emulator of the Audian Receive Fax API: a real HTTP server on loopback, with faults on demand.

Written from the API reference, not from this SDK (it imports nothing of the client), so a mismatch
on either side shows. Needs the ``emulator`` extra (starlette, uvicorn)::

    from audian_fax_async.emulator import EmulatorConfig, run_emulator

    async with run_emulator(EmulatorConfig(faxes=100, seed=7)) as emu:
        print(emu.base_url)            # http://127.0.0.1:PORT/v2
        async with emu.async_admin() as admin:
            await admin.script("download", [503, "truncate"])

See ``docs/emulator.md`` for the admin API, faults and scripts.
"""

from ._admin_client import AdminClient, AsyncAdminClient
from ._app import EmulatorCore, create_app
from ._cli import emulator_command
from ._config import PROFILES, EmulatorConfig, FaultConfig, fault_profile
from ._faults import ROUTES
from ._server import Emulator, EmulatorThread, run_emulator

__all__ = [
    "PROFILES",
    "ROUTES",
    "AdminClient",
    "AsyncAdminClient",
    "Emulator",
    "EmulatorConfig",
    "EmulatorCore",
    "EmulatorThread",
    "FaultConfig",
    "create_app",
    "emulator_command",
    "fault_profile",
    "run_emulator",
]
