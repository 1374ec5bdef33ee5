"""A stream channel's kept samples."""

from __future__ import annotations

import numpy as np

from percept.speech.audio import SAMPLE_RATE, Samples


class AudioBuffer:
    """A stream's kept samples, from stream sample `base` on. Appends are amortised
    O(1) (a call's chunks arrive every 20-100 ms; re-concatenating the utterance for
    each was quadratic); clips are copies, so the model may read them while the
    buffer moves on."""

    def __init__(self, capacity: int = 4 * SAMPLE_RATE) -> None:
        self._data = np.zeros(capacity, np.float32)
        self._size = 0
        self.base = 0

    @property
    def end(self) -> int:
        return self.base + self._size

    def append(self, samples: Samples) -> None:
        needed = self._size + len(samples)
        if needed > len(self._data):
            grown = np.zeros(max(needed, 2 * len(self._data)), np.float32)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : needed] = samples
        self._size = needed

    def keep_from(self, sample: int) -> None:
        """Forgets the samples before `sample`."""
        drop = min(sample - self.base, self._size)
        if drop > 0:
            self._data[: self._size - drop] = self._data[drop : self._size]
            self._size -= drop
            self.base += drop

    def clip(self, start: int, end: int) -> Samples:
        lo, hi = max(0, start - self.base), max(0, min(end, self.end) - self.base)
        return self._data[lo:hi].copy()
