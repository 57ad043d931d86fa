"""Exception types of the SF3D Studio client.

Every error the client raises is an :class:`SF3DError`; the subclasses say what went wrong in terms a caller
can act on. ``code`` is the server's error code (``docs/protocol.md``) when the server answered, ``status`` the
HTTP status when the answer came over HTTP, ``job_id`` the job concerned when one had been accepted.
"""

from __future__ import annotations

__all__ = [
    "SF3DError",
    "SF3DConnectionError",
    "AuthError",
    "QueueFullError",
    "BadInputError",
    "NotFoundError",
    "SF3DTimeoutError",
    "JobCancelledError",
    "ServerError",
    "ProtocolError",
    "error_from_code",
]


class SF3DError(Exception):
    """Base class of every error raised by :mod:`sf3d_client`."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        field: str | None = None,
        job_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.field = field
        self.job_id = job_id


class SF3DConnectionError(SF3DError, ConnectionError):
    """The server could not be reached (connection refused, unknown host, connect timeout), or the connection
    broke. Raised before a job was submitted unless ``job_id`` is set."""


class AuthError(SF3DError):
    """The server needs an API key, or refused the one given (HTTP 401/403, ``unauthorized``/``forbidden``)."""


class QueueFullError(SF3DError):
    """The server's queue is full (``queue_full``, HTTP 429); nothing was queued.

    ``retry_after`` is the number of seconds the server asked to wait (its ``Retry-After``), or ``None`` when the
    answer carried none (WebSocket error frames do not)."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        code: str | None = "queue_full",
        status: int | None = None,
        field: str | None = None,
        job_id: str | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status, field=field, job_id=job_id)
        self.retry_after = retry_after


class BadInputError(SF3DError):
    """The server refused the request's input: a parameter out of range (``field`` names it), an image it cannot
    decode or that is too large, an image without a foreground, or a malformed request (HTTP 4xx)."""


class NotFoundError(BadInputError):
    """The mesh or job named does not exist on the server (``not_found``, HTTP 404)."""


class SF3DTimeoutError(SF3DError, TimeoutError):
    """The call ran out of time. When ``job_id`` is set the job was accepted and may still finish: follow it with
    :meth:`SF3DClient.wait_for_job` instead of submitting it again."""


class JobCancelledError(SF3DError):
    """The job was cancelled on the server."""


class ServerError(SF3DError):
    """The server failed: an internal error, a job interrupted twice, every worker dead, shutting down, or a job
    past the server's ``--job-timeout`` (HTTP 5xx)."""


class ProtocolError(SF3DError):
    """The server speaks another protocol version, or sent something this client does not understand."""


_BAD_INPUT = {
    "bad_request",
    "unknown_message",
    "payload_too_large",
    "image_too_large",
    "unsupported_image",
    "unsupported_media_type",
    "invalid_params",
    "no_foreground",
    "no_surface",
}


def error_from_code(
    code: str,
    message: str,
    *,
    status: int | None = None,
    field: str | None = None,
    job_id: str | None = None,
    retry_after: float | None = None,
) -> SF3DError:
    """The exception for one of the server's error codes (``docs/protocol.md``)."""
    text = f"{code}: {message}" + (f" (field {field})" if field else "")
    if code == "queue_full":
        return QueueFullError(text, retry_after=retry_after, code=code, status=status, field=field, job_id=job_id)
    cls: type[SF3DError]
    if code in ("unauthorized", "forbidden"):
        cls = AuthError
    elif code == "not_found":
        cls = NotFoundError
    elif code in _BAD_INPUT:
        cls = BadInputError
    elif code == "cancelled":
        cls = JobCancelledError
    elif code == "protocol_mismatch":
        cls = ProtocolError
    elif code == "request_timeout":
        cls = SF3DTimeoutError
    elif status is not None and 400 <= status < 500:
        cls = BadInputError
    else:
        cls = ServerError
    return cls(text, code=code, status=status, field=field, job_id=job_id)
