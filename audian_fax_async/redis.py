"""Redis backends (the ``redis`` extra): the download limit and webhook de-duplication shared by
every process and host that uses one Redis.

* :class:`RedisLimiter`: the account's 10 concurrent downloads, held across processes::

      from audian_fax_async import FaxClient
      from audian_fax_async.redis import RedisLimiter

      limiter = RedisLimiter.from_url("redis://localhost:6379/0")
      async with FaxClient(limiter=limiter) as client:
          ...

* :class:`RedisIdempotencyStore`: several webhook receiver replicas handle each event once.

Guarantees and their limits are in ``docs/redis.md``. Needs asyncio (redis-py's asyncio client).
"""

try:
    import redis.asyncio  # noqa: F401 - only whether the extra is installed
except ImportError:
    raise ImportError(
        "the Redis limiter and store need redis: pip install 'audian-fax-async[redis]'", name="redis"
    ) from None

from ._redis._limiter import OnUnavailable, RedisLimiter, RedisLimiterOptions
from ._redis._store import RedisIdempotencyStore

__all__ = ["OnUnavailable", "RedisIdempotencyStore", "RedisLimiter", "RedisLimiterOptions"]
