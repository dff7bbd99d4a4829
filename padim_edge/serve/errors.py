"""The one error type a request handler raises: an HTTP status and a one-line JSON message."""

from __future__ import annotations


class RequestError(Exception):
    """A request the service refuses: answered ``{"error": message}`` with ``status``.

    Args:
        status: HTTP status (4xx for the caller's mistakes, 503 overload, 504 timeout).
        message: One line naming what is wrong and, where it helps, how to fix it.
        headers: Extra response headers (``Retry-After`` on 503).
    """

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
