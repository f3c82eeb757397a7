"""The errors the SDK raises.

Every error derives from :class:`AudianError`, so ``except AudianError`` catches all of them::

    AudianError
    ├── ClientClosedError            the client was used after aclose()
    ├── ConfigurationError           bad client configuration (no API key, bad base URL)
    ├── InvalidRequestError          an argument was refused before anything was sent (ValueError too)
    ├── APIConnectionError           the request could not be completed over the network
    │   └── APITimeoutError          a connect, read, write or pool timeout
    ├── APIStatusError               the API answered with a 4xx or 5xx status
    │   ├── BadRequestError          400
    │   ├── AuthenticationError      401
    │   ├── PermissionDeniedError    403
    │   ├── NotFoundError            404
    │   ├── ConflictError            409
    │   ├── UnprocessableEntityError 422
    │   ├── RateLimitError           429 (``retry_after`` in seconds, when the API said)
    │   └── InternalServerError      5xx
    ├── ValidationError              a response body did not match the documented shape
    │   ├── PaginationError          the listing stopped making progress (it ignores to_date/offset)
    │   └── ResponseTooLargeError    an answer's body was larger than ``max_response_bytes``
    ├── DownloadError                a document could not be fetched or saved intact
    │   ├── IncompleteDownloadError  fewer (or more) bytes than promised, or not a PDF
    │   └── DestinationError         the destination cannot be written (read-only, disk full, bad path)
    ├── LimiterError                 the download limiter could not admit or hold a slot
    └── WebhookError                 a webhook delivery was refused (see ``audian_fax_async.webhooks``)

Status errors carry the HTTP ``status_code``, ``method``, ``url``, a short ``body`` excerpt, the
parsed error ``code`` and ``message`` when the API sent its JSON error body, and the ``request_id``
header when present. No error message ever contains the API key.
"""

from __future__ import annotations

from typing import Any

import httpx2

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AudianError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConfigurationError",
    "ConflictError",
    "DestinationError",
    "DownloadError",
    "IncompleteDownloadError",
    "InternalServerError",
    "InvalidRequestError",
    "LimiterError",
    "NotFoundError",
    "PaginationError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseTooLargeError",
    "UnprocessableEntityError",
    "ValidationError",
    "WebhookError",
]

_BODY_EXCERPT = 500
_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-amzn-requestid", "x-correlation-id")


class AudianError(Exception):
    """Base class of every error raised by audian-fax-async."""


class ClientClosedError(AudianError, RuntimeError):
    """The :class:`FaxClient` was used after it was closed."""


class ConfigurationError(AudianError):
    """The client was configured wrongly (for example, no API key could be found)."""


class InvalidRequestError(AudianError, ValueError):
    """An argument was refused before any request was sent."""


class APIConnectionError(AudianError):
    """The request could not be sent or its answer could not be read."""

    def __init__(self, message: str, *, method: str = "", url: str = "", request_sent: bool = True) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        #: False only when the request surely never reached the server (no connection was made).
        self.request_sent = request_sent


class APITimeoutError(APIConnectionError):
    """A connect, read, write or connection-pool timeout."""


class APIStatusError(AudianError):
    """The API answered with an error status (4xx or 5xx)."""

    status_code: int

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        method: str,
        url: str,
        body: str = "",
        code: str | None = None,
        api_message: str | None = None,
        request_id: str | None = None,
        response: httpx2.Response | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.method = method
        self.url = url
        self.body = body
        self.code = code
        self.api_message = api_message
        self.request_id = request_id
        self.response = response

    def __reduce__(self) -> Any:  # pragma: no cover - pickling support for multiprocessing users
        return (_rebuild_status_error, (type(self), str(self), self.__dict__))


def _rebuild_status_error(cls: type[APIStatusError], message: str, state: dict[str, Any]) -> APIStatusError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class BadRequestError(APIStatusError):
    """400: the API refused a parameter."""

    status_code = 400


class AuthenticationError(APIStatusError):
    """401: the API key is missing or wrong."""

    status_code = 401


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this."""

    status_code = 403


class NotFoundError(APIStatusError):
    """404: no such fax (or route)."""

    status_code = 404


class ConflictError(APIStatusError):
    """409: the request conflicts with the account's state (for example, the fax number limit)."""

    status_code = 409


class UnprocessableEntityError(APIStatusError):
    """422: the request body was well formed but invalid."""

    status_code = 422


class RateLimitError(APIStatusError):
    """429: too many requests or too many concurrent downloads.

    ``retry_after`` is the wait in seconds the API asked for, or ``None``.
    """

    status_code = 429

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class InternalServerError(APIStatusError):
    """5xx: the API failed."""

    status_code = 500


class ValidationError(AudianError, ValueError):
    """A response (or webhook) body did not match the documented shape.

    ``path`` names the offending field (for example ``faxes[3].received_at``).
    """

    def __init__(self, message: str, *, path: str | None = None, model: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.model = model


class PaginationError(ValidationError):
    """Walking the listing made no progress: the API answered the same faxes for every page."""


class ResponseTooLargeError(ValidationError):
    """A non-document answer's body was larger than the client's ``max_response_bytes``."""


class DownloadError(AudianError):
    """A fax document could not be downloaded and saved intact."""

    def __init__(self, message: str, *, fax_id: str | None = None) -> None:
        super().__init__(message)
        self.fax_id = fax_id


class IncompleteDownloadError(DownloadError):
    """The body was shorter or longer than promised, or is not the promised kind of document."""

    def __init__(
        self,
        message: str,
        *,
        fax_id: str | None = None,
        expected: int | None = None,
        received: int | None = None,
    ) -> None:
        super().__init__(message, fax_id=fax_id)
        self.expected = expected
        self.received = received


class DestinationError(DownloadError):
    """The destination cannot be written: read-only folder, full disk, or a path outside the folder."""


class LimiterError(AudianError):
    """The download limiter could not admit a download or lost the slot it held."""


class WebhookError(AudianError):
    """A webhook delivery was refused. ``status_code`` is what a receiver should answer."""

    def __init__(self, message: str, *, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The exception class for an HTTP error status."""
    if status_code in _STATUS_CLASSES:
        return _STATUS_CLASSES[status_code]
    if status_code >= 500:
        return InternalServerError
    return APIStatusError


def find_request_id(headers: httpx2.Headers) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value: str | None = headers.get(name)
        if value:
            return value
    return None


def excerpt(text: str, limit: int = _BODY_EXCERPT) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "…"
