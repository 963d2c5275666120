"""The error type every emulator route raises; the HTTP layer turns it into Alpaca's JSON error."""

from __future__ import annotations


class ApiError(Exception):
    """An Alpaca-style error response: HTTP ``status`` plus a ``{"code", "message"}`` body.

    ``code=None`` produces a body with only ``message`` -- the shape of the bad-key 403, on which
    ``alpaca.common.exceptions.APIError.code`` raises ``KeyError``.

    Example::

        raise ApiError(422, 40010001, "client_order_id must be unique")
    """

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, object]:
        if self.code is None:
            return {"message": self.message}
        return {"code": self.code, "message": self.message}
