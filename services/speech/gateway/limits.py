"""Admission of gateway calls: the server's total, and each API key's share of it."""

from __future__ import annotations

from collections import Counter


class CallRefusedError(Exception):
    """No room for this call now; the message says which limit (the platform retries)."""


class Admission:
    """Counts the calls held, in total and per key (a key of None has no share limit:
    AudioSocket, or a server without API keys)."""

    def __init__(self, max_calls: int, max_per_key: int) -> None:
        self.max_calls, self.max_per_key = max_calls, max_per_key
        self.total = 0
        self.by_key: Counter[str] = Counter()

    def admit(self, key: str | None) -> None:
        if self.total >= self.max_calls:
            raise CallRefusedError(f"the gateway holds its {self.max_calls} calls")
        if key is not None and self.by_key[key] >= self.max_per_key:
            raise CallRefusedError(f"this API key holds its {self.max_per_key} calls")
        self.total += 1
        if key is not None:
            self.by_key[key] += 1

    def release(self, key: str | None) -> None:
        self.total -= 1
        if key is not None:
            self.by_key[key] -= 1
            if not self.by_key[key]:
                del self.by_key[key]
