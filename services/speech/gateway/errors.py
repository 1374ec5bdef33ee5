"""The gateway's errors and the WebSocket close codes (RFC 6455, 7.4.1) it answers with."""

from __future__ import annotations

# WebSocket close codes (RFC 6455, 7.4.1); AudioSocket has none and just closes.
NORMAL, GOING_AWAY, UNSUPPORTED, BAD_DATA, POLICY = 1000, 1001, 1003, 1007, 1008
TOO_BIG, INTERNAL, TRY_LATER = 1009, 1011, 1013


class ProtocolError(Exception):
    """The peer broke its protocol (or a limit): the connection closes with `code`
    (a WebSocket close code; AudioSocket just closes) and this message."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class AuthError(Exception):
    """A missing or wrong credential; the message names which, never its value."""
