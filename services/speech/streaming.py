"""One live call: audio in, partial and final results out.

Audio is decoded as it arrives and scored by the VAD. While someone speaks, a
draft of the utterance so far is decoded every `partial_interval_s` and passed
through LocalAgreement for a stable prefix; when the VAD hears enough silence,
END_OF_UTTERANCE goes out at once, then the utterance is decoded properly
(beam search, word times) into the FINAL, with intents and entities.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from percept.speech.agreement import LocalAgreement
from percept.speech.audio import SAMPLE_RATE, Samples
from percept.speech.backends import DraftRequest, Utterance, Word
from percept.speech.endpointing import Endpointer
from percept.speech.engine import SpeechEngine
from percept.speech.stream_audio import StreamDecoder
from percept.v1 import speech_pb2

PARTIAL = speech_pb2.RecognitionEvent.EVENT_TYPE_PARTIAL
END_OF_UTTERANCE = speech_pb2.RecognitionEvent.EVENT_TYPE_END_OF_UTTERANCE
PRE_ROLL_S = 0.3  # audio kept before the VAD's start: the first phoneme is soft
TAIL_S = 0.2  # audio kept after the VAD's end: the last one fades


@dataclass(frozen=True)
class StreamOptions:
    interim_results: bool = True
    language: str | None = None
    partial_interval_s: float = 0.6
    min_partial_audio_s: float = 0.5
    endpoint_silence_s: float = 0.5
    max_utterance_s: float = 25.0
    speculate_after_s: float = 0.25  # >= TAIL_S: the final's audio is all here by then


Decoded = tuple[list[Utterance], str]
Events = AsyncIterator[speech_pb2.RecognitionEvent]
FinalBuilder = Callable[[int, Utterance, str], speech_pb2.RecognitionEvent]


def _quiet(task: asyncio.Task[Any]) -> None:
    """A dropped guess may have failed; its error is the real final's to report."""
    if not task.cancelled():
        task.exception()


def _seconds(samples: int) -> float:
    return samples / SAMPLE_RATE


def merge(utterances: list[Utterance], offset: float) -> Utterance | None:
    """Whisper's segments of one VAD utterance as one utterance, in stream time."""
    if not utterances:
        return None
    words = tuple(
        Word(w.text, w.start + offset, w.end + offset, w.probability)
        for u in utterances
        for w in u.words
    )
    return Utterance(
        text=" ".join(u.text for u in utterances),
        start=utterances[0].start + offset,
        end=utterances[-1].end + offset,
        words=words,
        confidence=float(np.mean([u.confidence for u in utterances])),
    )


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


class RecognitionSession:
    def __init__(
        self,
        engine: SpeechEngine,
        decoder: StreamDecoder,
        options: StreamOptions,
        build_final: FinalBuilder,
        endpointer: Endpointer | None = None,
    ) -> None:
        self.engine, self.decoder, self.options = engine, decoder, options
        self.build_final = build_final
        self.endpointer = endpointer or Endpointer(
            min_silence_s=options.endpoint_silence_s, max_utterance_s=options.max_utterance_s
        )
        self.audio = AudioBuffer()
        self.utterance_start: int | None = None
        self.index = 0
        self.language = options.language
        self.agreement = LocalAgreement()
        self.last_draft_at = 0
        self.last_partial = ""
        self.speculation: tuple[tuple[int, int], asyncio.Task[Decoded]] | None = None

    @property
    def received_s(self) -> float:
        return _seconds(self.audio.end)

    def feed(self, data: bytes) -> Events:
        return self._process(self.decoder.feed(data))

    async def finish(self) -> Events:
        async for event in self._process(self.decoder.finish()):
            yield event
        for boundary in self.endpointer.flush():
            async for event in self._boundary(boundary.kind, boundary.sample):
                yield event

    def close(self) -> None:
        self._drop_speculation()
        self.decoder.close()

    async def _process(self, samples: Samples) -> Events:
        self.audio.append(samples)
        for boundary in self.endpointer.push(samples):
            async for event in self._boundary(boundary.kind, boundary.sample):
                yield event
        if self.utterance_start is None:
            self.audio.keep_from(self.audio.end - int(PRE_ROLL_S * SAMPLE_RATE))
            return
        self._speculate()
        if self.options.interim_results and self.endpointer.silent_since is None:
            partial = await self._maybe_partial()  # in a pause no new words come
            if partial is not None:
                yield partial

    def _speculate(self) -> None:
        """Starts decoding the final once a pause is long enough that the final's
        audio is all here: should the pause turn out to end the utterance, the
        final is (nearly) ready when the endpoint is declared; if speech resumes,
        the guess is dropped. This takes about 0.25 s off every final."""
        silent, start = self.endpointer.silent_since, self.utterance_start
        if silent is None or start is None:
            self._drop_speculation()
            return
        now = self.audio.end
        if now - silent < int(self.options.speculate_after_s * SAMPLE_RATE):
            return
        if self.speculation is not None and self.speculation[0] == (start, silent):
            return
        self._drop_speculation()
        clip = self.audio.clip(start, silent + int(TAIL_S * SAMPLE_RATE))
        task = asyncio.create_task(self.engine.transcribe(clip, self.language))
        task.add_done_callback(_quiet)
        self.speculation = ((start, silent), task)

    def _drop_speculation(self) -> None:
        if self.speculation is not None:
            self.speculation[1].cancel()
            self.speculation = None

    async def _final(self, start: int, sample: int) -> Decoded:
        if self.speculation is not None and self.speculation[0] == (start, sample):
            task, self.speculation = self.speculation[1], None
            return await task
        self._drop_speculation()
        end = min(sample + int(TAIL_S * SAMPLE_RATE), self.audio.end)
        return await self.engine.transcribe(self.audio.clip(start, end), self.language)

    async def _boundary(self, kind: str, sample: int) -> Events:
        if kind == "start":
            self.utterance_start = max(self.audio.base, sample - int(PRE_ROLL_S * SAMPLE_RATE))
            self.agreement = LocalAgreement()
            self.last_draft_at, self.last_partial = sample, ""
            return
        start, self.utterance_start = self.utterance_start, None
        if kind == "cancel" or start is None:
            self._drop_speculation()
            return
        index, self.index = self.index, self.index + 1
        eou = speech_pb2.RecognitionEvent(type=END_OF_UTTERANCE, utterance_index=index)
        eou.start_offset.FromNanoseconds(round(_seconds(start) * 1e9))
        eou.end_offset.FromNanoseconds(round(_seconds(sample) * 1e9))
        yield eou  # before decoding: the client learns the caller stopped at once
        utterances, language = await self._final(start, sample)
        self.language = self.language or language or None
        utterance = merge(utterances, _seconds(start))
        if utterance is not None and utterance.text.strip():
            # intents and entities take milliseconds: not on the event loop
            yield await asyncio.to_thread(self.build_final, index, utterance, language)

    async def _maybe_partial(self) -> speech_pb2.RecognitionEvent | None:
        assert self.utterance_start is not None
        now = self.audio.end
        interval = int(self.options.partial_interval_s * SAMPLE_RATE)
        if now - self.last_draft_at < interval or now - self.utterance_start < int(
            self.options.min_partial_audio_s * SAMPLE_RATE
        ):
            return None
        self.last_draft_at = now
        start = self.utterance_start
        draft = await self.engine.draft(
            DraftRequest(self.audio.clip(start, now), self.language, self.agreement.stable_text)
        )
        if draft is None or self.utterance_start != start:
            return None  # skipped (model busy) or the utterance ended meanwhile
        stable, text = self.agreement.update(draft[0])
        if not text or text == self.last_partial:
            return None
        self.last_partial = text
        event = speech_pb2.RecognitionEvent(
            type=PARTIAL,
            utterance_index=self.index,
            transcript=text,
            stable_prefix=stable,
            language_code=draft[1],
        )
        event.start_offset.FromNanoseconds(round(_seconds(start) * 1e9))
        event.end_offset.FromNanoseconds(round(_seconds(now) * 1e9))
        return event
