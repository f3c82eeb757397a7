"""Building the redis-py asyncio client that a limiter or store made from a URL owns."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = ["client_from_url"]


def client_from_url(url: str, *, connect_timeout: float, options: dict[str, Any] | None) -> aioredis.Redis:
    """A client for ``url``: one immediate retry on a dropped connection (a pooled connection that
    died with a Redis restart), no more. redis-py's default (10 retries, backing off up to 1 s)
    would hide an outage for seconds; the limiter and the store retry on their own terms.
    ``options`` (passed to ``redis.asyncio.Redis.from_url``) override these defaults."""
    settings: dict[str, Any] = {"socket_connect_timeout": connect_timeout, "retry": Retry(NoBackoff(), 1)}
    settings.update(options or {})
    return aioredis.Redis.from_url(url, **settings)
