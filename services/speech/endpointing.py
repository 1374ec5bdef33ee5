"""Where utterances start and end in a live stream: Silero VAD run incrementally.

The Silero model (ONNX, shipped inside faster-whisper) scores 32 ms windows; its
recurrent state carries from chunk to chunk, so a call is scored once, as it
arrives. Speech starts when a window scores over `threshold`, and the utterance
ends after `min_silence_s` below `threshold - 0.15` (hysteresis, as Silero's
own segmenter does), or when it grows past `max_utterance_s` (Whisper reads 30 s):
then it is cut at the quietest window of its last `cut_search_s`, the next one
starting exactly there, so that no word is heard twice or lost.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from percept.speech.audio import SAMPLE_RATE, Samples

WINDOW = 512  # samples per VAD window at 16 kHz
CONTEXT = 64  # samples of the previous window the model sees


class StreamingVad:
    """Speech probability per 32 ms window, keeping the model's state between calls."""

    def __init__(self) -> None:
        from faster_whisper.vad import get_vad_model  # one ONNX session per process

        self.session: Any = get_vad_model().session
        self.h = np.zeros((1, 1, 128), np.float32)
        self.c = np.zeros((1, 1, 128), np.float32)
        self.context = np.zeros(CONTEXT, np.float32)

    def __call__(self, windows: Samples) -> Samples:
        """Probabilities for `windows` (a multiple of WINDOW samples)."""
        batch = windows.reshape(-1, WINDOW)
        contexts = np.concatenate([self.context[None], batch[:-1, -CONTEXT:]])
        self.context = batch[-1, -CONTEXT:].copy()
        out, self.h, self.c = self.session.run(
            None, {"input": np.concatenate([contexts, batch], axis=1), "h": self.h, "c": self.c}
        )
        return np.asarray(out, np.float32).reshape(-1)


@dataclass(frozen=True)
class Boundary:
    kind: str  # "start", "end", or "cancel" (too short to be speech)
    sample: int  # position in the stream (16 kHz samples)
    cut: bool = False  # a long utterance split here: no pre-roll or tail across it


class Endpointer:
    def __init__(
        self,
        *,
        threshold: float = 0.5,
        min_silence_s: float = 0.5,
        min_speech_s: float = 0.25,
        max_utterance_s: float = 25.0,
        cut_search_s: float = 5.0,
        vad: StreamingVad | None = None,
    ) -> None:
        self.vad = vad or StreamingVad()
        self.threshold = threshold
        self.off_threshold = max(threshold - 0.15, 0.01)
        self.min_silence = int(min_silence_s * SAMPLE_RATE)
        self.min_speech = int(min_speech_s * SAMPLE_RATE)
        self.max_utterance = int(max_utterance_s * SAMPLE_RATE)
        self.cut_search = max(1, int(cut_search_s * SAMPLE_RATE) // WINDOW)
        self.recent: deque[tuple[float, int]] = deque(maxlen=self.cut_search)
        self.pending = np.zeros(0, np.float32)
        self.position = 0  # samples scored so far
        self.start: int | None = None  # the utterance in progress
        self.silent_since: int | None = None

    @property
    def in_speech(self) -> bool:
        return self.start is not None

    def push(self, samples: Samples) -> list[Boundary]:
        self.pending = np.concatenate([self.pending, samples])
        whole = len(self.pending) - len(self.pending) % WINDOW
        if not whole:
            return []
        windows, self.pending = self.pending[:whole], self.pending[whole:]
        boundaries = []
        for p in self.vad(windows):
            at = self.position
            self.position += WINDOW
            self.recent.append((float(p), at))
            if self.start is None:
                if p >= self.threshold:
                    self.start, self.silent_since = at, None
                    boundaries.append(Boundary("start", at))
                continue
            if p < self.off_threshold:
                self.silent_since = at if self.silent_since is None else self.silent_since
            elif p >= self.threshold:
                self.silent_since = None
            if self.silent_since is not None and self.position - self.silent_since >= (
                self.min_silence
            ):
                boundaries += self._end(self.silent_since)
            elif self.position - self.start >= self.max_utterance:
                # speech goes on: cut where it is quietest (a breath between words)
                window = [(p, w) for p, w in self.recent if w > self.start + self.min_speech]
                cut = min(window)[1] if window else self.position
                boundaries += [Boundary("end", cut, cut=True), Boundary("start", cut, cut=True)]
                self.start, self.silent_since = cut, None
        return boundaries

    def _end(self, at: int) -> list[Boundary]:
        start, self.start, self.silent_since = self.start, None, None
        assert start is not None
        if at - start < self.min_speech:  # a click or a cough: no utterance
            return [Boundary("cancel", start)]
        return [Boundary("end", at)]

    def flush(self) -> list[Boundary]:
        """The stream ended: close the utterance in progress."""
        if self.start is None:
            return []
        end = self.position + len(self.pending) if self.silent_since is None else self.silent_since
        return self._end(end)
