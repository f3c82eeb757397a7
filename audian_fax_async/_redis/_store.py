"""``RedisIdempotencyStore``: webhook de-duplication shared by every receiver replica.

A key is one Redis string: the claim token while in flight (``SET NX PX lease``), ``done`` once
handled (``PX ttl``), absent otherwise. Claim, complete and release are each one Lua script, so of
many concurrent claims exactly one wins and a holder whose lease ran out cannot undo a later claim.
Expiry is Redis's own, so the hosts' clocks do not matter.
"""

from __future__ import annotations

from typing import Any

import anyio
import redis.asyncio as aioredis
import redis.exceptions as redis_errors

from .._exceptions import WebhookError
from ..webhooks._store import DEFAULT_LEASE, DEFAULT_TTL, Claim, ClaimStatus, IdempotencyStore, new_token
from ._connect import client_from_url
from ._scripts import CLAIM, COMPLETE, RELEASE_CLAIM

__all__ = ["RedisIdempotencyStore"]

_STATUS = {1: ClaimStatus.CLAIMED, 2: ClaimStatus.DONE, 3: ClaimStatus.IN_FLIGHT}


class RedisIdempotencyStore(IdempotencyStore):
    """An idempotency store on Redis, for several receiver processes or hosts behind one URL.

    ::

        store = RedisIdempotencyStore.from_url("redis://localhost:6379/0")
        receiver = WebhookReceiver(on_event, store=store)

    Keys are ``key_prefix + event key``. If Redis cannot be reached a claim raises
    :class:`~audian_fax_async.WebhookError` with status 503, so the API retries the delivery later
    (rather than the event being handled twice or lost).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        key_prefix: str = "audian:webhook:",
        command_timeout: float = 2.0,
        close_client: bool = False,
    ) -> None:
        if command_timeout <= 0:
            raise ValueError(f"command_timeout must be > 0, got {command_timeout!r}")
        self.client = client
        self.key_prefix = key_prefix
        self.command_timeout = float(command_timeout)
        self._close_client = close_client
        self._claim = client.register_script(CLAIM)
        self._complete = client.register_script(COMPLETE)
        self._release = client.register_script(RELEASE_CLAIM)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key_prefix: str = "audian:webhook:",
        command_timeout: float = 2.0,
        redis_options: dict[str, Any] | None = None,
    ) -> RedisIdempotencyStore:
        """A store on its own Redis connection pool (closed by :meth:`aclose`)."""
        client = client_from_url(url, connect_timeout=command_timeout, options=redis_options)
        return cls(client, key_prefix=key_prefix, command_timeout=command_timeout, close_client=True)

    def __repr__(self) -> str:
        return f"<RedisIdempotencyStore key_prefix={self.key_prefix!r}>"

    async def aclose(self) -> None:
        """Close the Redis connection pool if the store created it (:meth:`from_url`)."""
        if self._close_client:
            await self.client.aclose()

    async def _run(self, script: Any, key: str, *args: object) -> int:
        try:
            with anyio.fail_after(self.command_timeout):
                result = await script(keys=[self.key_prefix + key], args=list(args))
        except (redis_errors.RedisError, OSError, TimeoutError) as exc:
            raise WebhookError(f"the idempotency store (Redis) is unavailable: {exc!r}", status_code=503) from exc
        return int(result)

    async def claim(self, key: str, *, lease: float = DEFAULT_LEASE) -> Claim:
        token = new_token()
        status = _STATUS[await self._run(self._claim, key, token, _ms(lease))]
        return Claim(key, status, token if status is ClaimStatus.CLAIMED else None)

    async def complete(self, claim: Claim, *, ttl: float = DEFAULT_TTL) -> bool:
        if claim.token is None:
            return False
        return await self._run(self._complete, claim.key, claim.token, _ms(ttl)) == 1

    async def release(self, claim: Claim) -> bool:
        if claim.token is None:
            return False
        return await self._run(self._release, claim.key, claim.token) == 1


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
