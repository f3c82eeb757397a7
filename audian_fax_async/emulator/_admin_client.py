"""Clients of the admin API, synchronous and asynchronous, on httpx2.

Both expose the same methods; they raise ``httpx2.HTTPStatusError`` when the admin API refuses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self, overload
from urllib.parse import quote

import httpx2

from ._config import FaultConfig

__all__ = ["AdminClient", "AsyncAdminClient"]

Json = dict[str, Any]


def _acct(key: str) -> str:
    return "/accounts/" + quote(key, safe="")


def _inject_body(
    count: int | None, faxes: Sequence[Mapping[str, Any]] | None, fields: Mapping[str, Any] | None
) -> Json:
    body: Json = {}
    if count is not None:
        body["count"] = count
        if fields:
            body["fields"] = dict(fields)
    if faxes is not None:
        body["faxes"] = [dict(f) for f in faxes]
    if count is None and faxes is None and fields:
        body["faxes"] = [dict(fields)]
    return body


def _arrivals_body(count: int | None, faxes: Sequence[Mapping[str, Any]] | None, fields: Mapping[str, Any]) -> Json:
    """The ``arrivals`` body: ``count`` generated faxes sharing ``fields``, explicit ``faxes``, or
    one fax made of ``fields``."""
    if count is None and faxes is None:
        return {"faxes": [dict(fields)]}
    return _inject_body(count, faxes, fields)


def _faults_body(profile: str | FaultConfig | None, replace: bool, options: dict[str, Any]) -> Json:
    if isinstance(profile, FaultConfig):
        return {"replace": True, **profile.to_json(), **options}
    body: Json = {"replace": replace, **options}
    if profile is not None:
        body["profile"] = profile
    return body


def _check(response: httpx2.Response) -> Json:
    if response.is_error:
        raise httpx2.HTTPStatusError(
            f"admin API refused {response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text}",
            request=response.request,
            response=response,
        )
    data: Json = response.json()
    return data


class AdminClient:
    """Synchronous admin client.

    Example::

        with AdminClient("http://127.0.0.1:8443/_emulator") as admin:
            admin.script("download", [503, "truncate"])
            print(admin.stats("test-key")["downloads"]["highest"])
    """

    def __init__(self, admin_url: str, *, admin_key: str | None = None, timeout: float = 30.0) -> None:
        headers = {"X-Admin-Key": admin_key} if admin_key else {}
        self._http = httpx2.Client(base_url=admin_url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, body: Json | None = None) -> Json:
        return _check(self._http.request(method, path, json=body))

    def health(self) -> Json:
        """``{"ok": true}`` when the server answers."""
        return self._call("GET", "/health")

    def stats(self, key: str) -> Json:
        """One account's statistics."""
        return self._call("GET", _acct(key) + "/stats")

    def stats_all(self) -> Json:
        """All accounts' statistics, the document cache, the faults and scripts in force."""
        return self._call("GET", "/stats")

    def faults(self) -> Json:
        """The faults in force."""
        return self._call("GET", "/faults")

    def set_faults(self, profile: str | FaultConfig | None = None, *, replace: bool = True, **options: Any) -> Json:
        """Set the faults: a named ``profile`` or a :class:`FaultConfig`, and/or options (``p503=0.1``,
        ``latency=0.05``...).

        With ``replace`` (the default) unspecified options return to their defaults (or the profile's);
        otherwise they keep their current values.
        """
        return self._call("PUT", "/faults", _faults_body(profile, replace, options))

    def script(self, route: str, responses: Sequence[object], *, key: str | None = None) -> Json:
        """The next requests to ``route`` answer with ``responses`` in order (``503``, ``"drop"``,
        ``"truncate"``, ``{"status": 429, "retry_after": 2}``, ``{"action": "delay", "seconds": 1}``)."""
        body: Json = {"route": route, "responses": list(responses)}
        if key is not None:
            body["key"] = key
        return self._call("POST", "/scripts", body)

    def clear_scripts(self) -> Json:
        """Drop every queued scripted response."""
        return self._call("DELETE", "/scripts")

    def reset(self, key: str | None = None) -> Json:
        """Forget one account (regenerated on next use), or everything including faults and scripts."""
        return self._call("POST", _acct(key) + "/reset" if key is not None else "/reset")

    def inject(
        self,
        key: str,
        *,
        count: int | None = None,
        faxes: Sequence[Mapping[str, Any]] | None = None,
        arrive: bool = False,
        **fields: Any,
    ) -> list[Json]:
        """Add faxes to an account: ``count`` generated ones (sharing ``fields``) and/or explicit
        ``faxes``; with ``arrive`` they are announced to webhooks and routing rules. Fields include
        ``pages``, ``size`` (exact document bytes), ``received_at``, ``status``, ``from_number``."""
        body = _inject_body(count, faxes, fields)
        body["arrive"] = arrive
        faxes_out: list[Json] = self._call("POST", _acct(key) + "/faxes", body)["faxes"]
        return faxes_out

    @overload
    def arrive(self, key: str, *, count: int, faxes: None = None, **fields: Any) -> list[Json]: ...
    @overload
    def arrive(
        self, key: str, *, faxes: Sequence[Mapping[str, Any]], count: None = None, **fields: Any
    ) -> list[Json]: ...
    @overload
    def arrive(self, key: str, *, count: None = None, faxes: None = None, **fields: Any) -> Json: ...
    def arrive(
        self, key: str, *, count: int | None = None, faxes: Sequence[Mapping[str, Any]] | None = None, **fields: Any
    ) -> Json | list[Json]:
        """Faxes arrive now, announced to webhooks and routing rules (the ``arrivals`` endpoint).

        ``arrive(key, **fields)``: one fax (generated, ``fields`` overriding), returned as its detail
        object. ``arrive(key, count=3, **fields)`` and ``arrive(key, faxes=[{...}, ...])``: several,
        returned as a list, like :meth:`inject`."""
        body = _arrivals_body(count, faxes, fields)
        made: list[Json] = self._call("POST", _acct(key) + "/arrivals", body)["faxes"]
        return made if count is not None or faxes is not None else made[0]

    def start_arrivals(self, key: str, rate: float, count: int | None = None) -> Json:
        """Start a stream of arrivals at ``rate`` per second (``count`` of them, or until stopped)."""
        return self._call("POST", _acct(key) + "/arrivals/stream", {"rate": rate, "count": count})

    def stop_arrivals(self, key: str) -> Json:
        """Stop the account's stream of arrivals."""
        return self._call("DELETE", _acct(key) + "/arrivals/stream")

    def deliveries(self, key: str) -> list[Json]:
        """Every webhook delivery attempt of the account, oldest first."""
        out: list[Json] = self._call("GET", _acct(key) + "/deliveries")["deliveries"]
        return out

    def outbox(self, key: str) -> list[Json]:
        """Messages the account's email routing rules would have sent."""
        out: list[Json] = self._call("GET", _acct(key) + "/outbox")["messages"]
        return out

    def subscriptions(self, key: str) -> Json:
        """The account's webhooks, routing rules and numbers."""
        return self._call("GET", _acct(key) + "/subscriptions")

    def document(self, key: str, fax_id: str) -> Json:
        """``{"fax_id", "sha256", "file_size", "etag"}`` of a fax's document."""
        return self._call("GET", _acct(key) + f"/faxes/{quote(fax_id, safe='')}/document")

    def document_sha256(self, key: str, fax_id: str) -> str:
        """Hex SHA-256 of a fax's document, to check a download against."""
        digest: str = self.document(key, fax_id)["sha256"]
        return digest


class AsyncAdminClient:
    """Asynchronous admin client; same methods as :class:`AdminClient`, awaited.

    Example::

        async with AsyncAdminClient(emulator.admin_url) as admin:
            await admin.script("list", [{"status": 429, "retry_after": 1}])
    """

    def __init__(self, admin_url: str, *, admin_key: str | None = None, timeout: float = 30.0) -> None:
        headers = {"X-Admin-Key": admin_key} if admin_key else {}
        self._http = httpx2.AsyncClient(base_url=admin_url.rstrip("/"), headers=headers, timeout=timeout)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _call(self, method: str, path: str, body: Json | None = None) -> Json:
        return _check(await self._http.request(method, path, json=body))

    async def health(self) -> Json:
        """``{"ok": true}`` when the server answers."""
        return await self._call("GET", "/health")

    async def stats(self, key: str) -> Json:
        """One account's statistics."""
        return await self._call("GET", _acct(key) + "/stats")

    async def stats_all(self) -> Json:
        """All accounts' statistics, the document cache, the faults and scripts in force."""
        return await self._call("GET", "/stats")

    async def faults(self) -> Json:
        """The faults in force."""
        return await self._call("GET", "/faults")

    async def set_faults(
        self, profile: str | FaultConfig | None = None, *, replace: bool = True, **options: Any
    ) -> Json:
        """See :meth:`AdminClient.set_faults`."""
        return await self._call("PUT", "/faults", _faults_body(profile, replace, options))

    async def script(self, route: str, responses: Sequence[object], *, key: str | None = None) -> Json:
        """See :meth:`AdminClient.script`."""
        body: Json = {"route": route, "responses": list(responses)}
        if key is not None:
            body["key"] = key
        return await self._call("POST", "/scripts", body)

    async def clear_scripts(self) -> Json:
        """Drop every queued scripted response."""
        return await self._call("DELETE", "/scripts")

    async def reset(self, key: str | None = None) -> Json:
        """See :meth:`AdminClient.reset`."""
        return await self._call("POST", _acct(key) + "/reset" if key is not None else "/reset")

    async def inject(
        self,
        key: str,
        *,
        count: int | None = None,
        faxes: Sequence[Mapping[str, Any]] | None = None,
        arrive: bool = False,
        **fields: Any,
    ) -> list[Json]:
        """See :meth:`AdminClient.inject`."""
        body = _inject_body(count, faxes, fields)
        body["arrive"] = arrive
        faxes_out: list[Json] = (await self._call("POST", _acct(key) + "/faxes", body))["faxes"]
        return faxes_out

    @overload
    async def arrive(self, key: str, *, count: int, faxes: None = None, **fields: Any) -> list[Json]: ...
    @overload
    async def arrive(
        self, key: str, *, faxes: Sequence[Mapping[str, Any]], count: None = None, **fields: Any
    ) -> list[Json]: ...
    @overload
    async def arrive(self, key: str, *, count: None = None, faxes: None = None, **fields: Any) -> Json: ...
    async def arrive(
        self, key: str, *, count: int | None = None, faxes: Sequence[Mapping[str, Any]] | None = None, **fields: Any
    ) -> Json | list[Json]:
        """See :meth:`AdminClient.arrive`."""
        body = _arrivals_body(count, faxes, fields)
        made: list[Json] = (await self._call("POST", _acct(key) + "/arrivals", body))["faxes"]
        return made if count is not None or faxes is not None else made[0]

    async def start_arrivals(self, key: str, rate: float, count: int | None = None) -> Json:
        """See :meth:`AdminClient.start_arrivals`."""
        return await self._call("POST", _acct(key) + "/arrivals/stream", {"rate": rate, "count": count})

    async def stop_arrivals(self, key: str) -> Json:
        """Stop the account's stream of arrivals."""
        return await self._call("DELETE", _acct(key) + "/arrivals/stream")

    async def deliveries(self, key: str) -> list[Json]:
        """See :meth:`AdminClient.deliveries`."""
        out: list[Json] = (await self._call("GET", _acct(key) + "/deliveries"))["deliveries"]
        return out

    async def outbox(self, key: str) -> list[Json]:
        """See :meth:`AdminClient.outbox`."""
        out: list[Json] = (await self._call("GET", _acct(key) + "/outbox"))["messages"]
        return out

    async def subscriptions(self, key: str) -> Json:
        """See :meth:`AdminClient.subscriptions`."""
        return await self._call("GET", _acct(key) + "/subscriptions")

    async def document(self, key: str, fax_id: str) -> Json:
        """See :meth:`AdminClient.document`."""
        return await self._call("GET", _acct(key) + f"/faxes/{quote(fax_id, safe='')}/document")

    async def document_sha256(self, key: str, fax_id: str) -> str:
        """See :meth:`AdminClient.document_sha256`."""
        digest: str = (await self.document(key, fax_id))["sha256"]
        return digest
