"""Client configuration: defaults and where settings come from. No I/O."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

import httpx2

from ._exceptions import ConfigurationError

__all__ = [
    "API_KEY_ENV",
    "AUTH_HEADER",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_CONCURRENT_DOWNLOADS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_REQUEST_DEADLINE",
    "DEFAULT_TIMEOUT",
    "account_id",
    "check_default_headers",
    "check_max_concurrent_downloads",
    "check_max_retries",
    "mask_key",
    "resolve_api_key",
    "resolve_base_url",
]

API_KEY_ENV = "AUDIAN_API_KEY"
#: The header the key is sent in (the reference's curl examples use it).
AUTH_HEADER = "X-Auth-Token"
BASE_URL_ENV = "AUDIAN_BASE_URL"
DEFAULT_BASE_URL = "https://api.audian.com:8443/v2"
DEFAULT_MAX_RETRIES = 3
#: The account's documented limit: "Concurrent downloads: 10 per account".
DEFAULT_MAX_CONCURRENT_DOWNLOADS = 10
DEFAULT_TIMEOUT = httpx2.Timeout(connect=10.0, read=60.0, write=30.0, pool=30.0)
DEFAULT_LIMITS = httpx2.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=30.0)
#: The largest body of a non-document answer (listings, records) the client reads before refusing it.
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
#: The longest one attempt of a non-document call may take, from sending to the last byte of its answer
#: (a server dripping bytes never trips the read timeout, which bounds each wait, not the whole).
DEFAULT_REQUEST_DEADLINE = 120.0


def resolve_api_key(api_key: str | None, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    key = api_key if api_key is not None else env.get(API_KEY_ENV)
    if key is None or not key.strip():
        raise ConfigurationError(
            f"No API key: pass FaxClient(api_key=...) or set the {API_KEY_ENV} environment variable."
        )
    key = key.strip()
    if any(ch in key for ch in "\r\n\x00"):
        raise ConfigurationError("The API key contains a line break or NUL character.")
    if not key.isascii() or not key.isprintable():
        raise ConfigurationError("The API key must be printable ASCII (it is sent as an HTTP header).")
    return key


def resolve_base_url(base_url: str | httpx2.URL | None, env: Mapping[str, str] | None = None) -> httpx2.URL:
    env = os.environ if env is None else env
    raw = base_url if base_url is not None else env.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    try:
        url = httpx2.URL(str(raw))
    except httpx2.InvalidURL as exc:
        raise ConfigurationError(f"Invalid base URL {raw!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"Invalid base URL {_no_userinfo(url)!r}: expected http(s)://host[:port]/path")
    if url.userinfo:
        raise ConfigurationError(
            f"base URL {_no_userinfo(url)!r} has credentials (user:password@) in it: the API authenticates with "
            "the key alone; pass it as api_key"
        )
    path = url.raw_path.decode("ascii").split("?", 1)[0]
    if not path.endswith("/"):
        path += "/"
    return url.copy_with(raw_path=path.encode("ascii"), query=None, fragment=None)


def _no_userinfo(url: httpx2.URL) -> str:
    return str(url.copy_with(username=None, password=None)) if url.userinfo else str(url)


def mask_key(key: str) -> str:
    """A form of the key safe for reprs and logs: never more than its last four characters."""
    return "…" + key[-4:] if len(key) > 12 else "…"


def account_id(api_key: str, base_url: httpx2.URL) -> str:
    """An opaque, stable name for the account behind a key (the key itself never leaves the client)."""
    origin = f"{base_url.scheme}://{base_url.netloc.decode('ascii')}"
    return hashlib.sha256(f"{origin}\x00{api_key}".encode()).hexdigest()[:24]


def check_max_concurrent_downloads(value: object) -> int:
    """A client's own cap on downloads: an integer from 1 to the account's 10."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= DEFAULT_MAX_CONCURRENT_DOWNLOADS:
        raise ConfigurationError(
            f"max_concurrent_downloads must be an integer from 1 to {DEFAULT_MAX_CONCURRENT_DOWNLOADS} "
            f"(the account's limit), got {value!r}"
        )
    return value


def check_max_retries(value: object) -> int | None:
    """A retry count: an integer from 0 to 100, or None (the policy's own)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100):
        raise ConfigurationError(f"max_retries must be an integer from 0 to 100, got {value!r}")
    return value


def check_default_headers(headers: Mapping[str, str] | None) -> Mapping[str, str]:
    """Headers for every request, never the key (it is the client's ``api_key``)."""
    if headers and any(name.lower() == AUTH_HEADER.lower() for name in headers):
        raise ConfigurationError("pass the key as api_key, not in default_headers")
    return headers or {}
