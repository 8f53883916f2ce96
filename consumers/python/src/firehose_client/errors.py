"""Exceptions raised by firehose_client. Every one is a FirehoseError."""

from __future__ import annotations

from typing import Optional


class FirehoseError(Exception):
    """Base class of everything this package raises on purpose."""


class TokenRefused(FirehoseError):
    """The broker refused the token: HTTP 401 (none or unknown) or 403 (not allowed here), or
    close code 4001. Retrying with the same token will not help."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__("token refused (%d)%s" % (status, ": " + message if message else ""))
        self.status = status


class BadFilter(FirehoseError):
    """The broker refused the filter; the message starts with the offending key
    (``filter.results: expected integers 0-6``)."""


class BadRequest(FirehoseError):
    """The broker refused a request (a bad ``from`` position, an unknown parameter, ...)."""


class CursorExpired(FirehoseError):
    """The position to resume from is older than what Kafka keeps. ``earliest`` is the cursor of
    the oldest position still kept (resume from it to accept the loss), when the broker named it."""

    def __init__(self, message: str, earliest: Optional[str] = None) -> None:
        super().__init__(message)
        self.earliest = earliest


class ServerClosed(FirehoseError):
    """The broker closed the stream with a code that retrying will not change (1002 protocol
    error, 1003, 1007, 1009 message too big, 4000 bad request)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__("the broker closed the stream: %d %s" % (code, reason))
        self.code = code
        self.reason = reason


class CertificateError(FirehoseError):
    """The broker's TLS certificate did not verify (unknown CA, another host name, expired).
    Pass the right ``cafile``; retrying will not help."""


class GaveUp(FirehoseError):
    """``max_reconnects`` connection attempts in a row failed."""


class InsecureToken(FirehoseError):
    """A token would have gone in clear text over ws:// or http:// to a host that is not this
    machine; use wss:// / https://, or pass allow_insecure_token=True if you accept that."""


class RestError(FirehoseError):
    """A REST call answered with an error: status, and the broker's error code, message and the
    parameter it names (``{"error":..., "message":..., "parameter":...}``)."""

    def __init__(self, status: int, error: str, message: str, parameter: Optional[str] = None) -> None:
        super().__init__("HTTP %d %s: %s" % (status, error, message))
        self.status = status
        self.error = error
        self.message = message
        self.parameter = parameter
