"""One channel of a live call: samples in, partial and final results out.

Samples are scored by the channel's own VAD as they arrive. While someone speaks, a
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
from percept.speech.audio_buffer import AudioBuffer
from percept.speech.backends import DraftRequest, Said, Transcript, Utterance
from percept.speech.endpointing import Boundary, Endpointer
from percept.speech.engine import SpeechEngine
from percept.speech.final_context import (
    LEAD_S,
    PROMPT_CHARS,
    SHORT_UTTERANCE_S,
    SPLICED_FINAL_S,
    WINDOW_S,
    FinalJob,
    holds_words,
    merge,
    voiced,
)
from percept.speech.language_vote import LanguageVote
from percept.v1 import speech_pb2

PARTIAL = speech_pb2.RecognitionEvent.EVENT_TYPE_PARTIAL
END_OF_UTTERANCE = speech_pb2.RecognitionEvent.EVENT_TYPE_END_OF_UTTERANCE
PRE_ROLL_S = 0.3  # audio kept before the VAD's start: the first phoneme is soft
TAIL_S = 0.2  # audio kept after the VAD's end: the last one fades
SPLICED_PAUSE_S = 0.5  # the quiet line between earlier words spliced in and an utterance


@dataclass(frozen=True)
class StreamOptions:
    interim_results: bool = True
    language: str | None = None
    partial_interval_s: float = 0.6
    min_partial_audio_s: float = 0.5
    endpoint_silence_s: float = 0.5
    max_utterance_s: float = 25.0
    speculate_after_s: float = TAIL_S  # the final's audio is all here by then


Events = AsyncIterator[speech_pb2.RecognitionEvent]
FinalBuilder = Callable[[int, Utterance, str], speech_pb2.RecognitionEvent]
UNSPECIFIED = speech_pb2.CHANNEL_ROLE_UNSPECIFIED


def _quiet(task: asyncio.Task[Any]) -> None:
    """A dropped guess may have failed; its error is the real final's to report."""
    if not task.cancelled():
        task.exception()


def _seconds(samples: int) -> float:
    return samples / SAMPLE_RATE


class ChannelRecognizer:
    """A channel's voice activity, utterance numbering and decoding context: on a
    stereo call the agent and the customer each have one, sharing the engine."""

    def __init__(
        self,
        engine: SpeechEngine,
        options: StreamOptions,
        build_final: FinalBuilder,
        *,
        channel: int = 0,
        role: int = UNSPECIFIED,
        endpointer: Endpointer | None = None,
    ) -> None:
        self.engine, self.options = engine, options
        self.build_final = build_final
        self.channel, self.role = channel, role
        self.endpointer = endpointer or Endpointer(
            min_silence_s=options.endpoint_silence_s, max_utterance_s=options.max_utterance_s
        )
        self.audio = AudioBuffer()
        self.utterance_start: int | None = None
        self.voice_start = 0  # where the VAD heard the utterance's voice begin
        self.index = 0
        self.vote = LanguageVote(options.language)
        self.agreement = LocalAgreement()
        self.last_draft_at = 0
        self.last_partial = ""
        self.speculation: tuple[tuple[int, int], asyncio.Task[Transcript]] | None = None
        # the finals so far (their audio's start and end, their text): the decoder's context
        self.history: list[tuple[int, int, str]] = []
        self.last_words: Samples | None = None  # the last final's audio, if short

    def _job(self, start: int, speech_end: int, *, tail: bool = True) -> FinalJob:
        """What a final is decoded from: the channel's audio from the first of its
        finals that started within WINDOW_S of the utterance's end, those finals
        the decoder's prefix, the ones before them its prompt."""
        # a cut utterance ends where the next begins: its tail would be the next's words
        end = speech_end + (int(TAIL_S * SAMPLE_RATE) if tail else 0)
        voice = start + int(PRE_ROLL_S * SAMPLE_RATE)
        reach = max(self.audio.base, end - int(WINDOW_S * SAMPLE_RATE))
        inside = len(self.history)
        while inside and self.history[inside - 1][0] >= reach:
            inside -= 1
        earlier = self.history[inside:]
        spliced = None
        short = speech_end - start < SHORT_UTTERANCE_S * SAMPLE_RATE
        if not earlier and self.last_words is not None and short:
            # spoken long ago (the other side's turn on a stereo call, a long
            # pause): the last final's audio spliced in before a pause, at stream
            # positions that run on into this utterance's
            spliced = self.last_words
            clip_from = max(self.audio.base, start - int(SPLICED_PAUSE_S * SAMPLE_RATE))
            earlier = [(clip_from - len(spliced), clip_from, self.history[-1][2])]
            inside -= 1
        else:
            clip_from = earlier[0][0] if earlier else self._lead_from(start, voice)
        context_from = earlier[0][0] if earlier else clip_from
        clip = self.audio.clip(clip_from, end)
        if spliced is not None:
            clip = np.concatenate([spliced, clip])
        said = tuple(
            Said(_seconds(begun - context_from), _seconds(ended - context_from), text)
            for begun, ended, text in earlier
        )
        prompt = " ".join(text for *_, text in self.history[:inside])
        if len(prompt) > PROMPT_CHARS:  # from a word's start
            prompt = prompt[-PROMPT_CHARS:].partition(" ")[2]
        # the earlier words end before the middle of the pause after them; with
        # none, all that is heard is the utterance's
        boundary = (
            max(context_from, min(start, (earlier[-1][1] + voice) // 2))
            if earlier
            else context_from
        )
        return FinalJob(clip, prompt, context_from, boundary, speech_end, voice, said)

    def _lead_from(self, start: int, voice: int) -> int:
        """Where a final with no earlier final in its window starts: LEAD_S before
        its voice, not before the channel's last final ended."""
        floor = self.history[-1][1] if self.history else self.audio.base
        return min(start, max(self.audio.base, floor, voice - int(LEAD_S * SAMPLE_RATE)))

    def _remember(self, start: int, end: int, text: str) -> None:
        """A final given: the context of the channel's next ones."""
        self.history.append((start, end, text))
        short = end - start <= SPLICED_FINAL_S * SAMPLE_RATE
        self.last_words = self.audio.clip(start, end) if short else None

    @property
    def received_s(self) -> float:
        return _seconds(self.audio.end)

    def _stamp(self, event: speech_pb2.RecognitionEvent) -> speech_pb2.RecognitionEvent:
        event.channel, event.role = self.channel, self.role  # type: ignore[assignment]
        return event

    async def push(self, samples: Samples) -> Events:
        async for event in self._process(samples):
            yield self._stamp(event)

    async def finish(self) -> Events:
        """The stream ended: the utterance in progress becomes a final."""
        for boundary in self.endpointer.flush():
            async for event in self._boundary(boundary):
                yield self._stamp(event)

    def close(self) -> None:
        self._drop_speculation()

    async def _process(self, samples: Samples) -> Events:
        self.audio.append(samples)
        for boundary in self.endpointer.push(samples):
            async for event in self._boundary(boundary):
                yield event
        # A decode reads at most a window (and pre-roll) before the utterance it is for.
        # Trimmed in speech too: hold music or a monologue is cut every max_utterance_s
        # and never falls silent, and the buffer would grow with the call.
        anchor = self.audio.end if self.utterance_start is None else self.utterance_start
        self.audio.keep_from(anchor - int((PRE_ROLL_S + WINDOW_S) * SAMPLE_RATE))
        if self.utterance_start is None:
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
        task = asyncio.create_task(self._decode(self._job(start, silent)))
        task.add_done_callback(_quiet)
        self.speculation = ((start, silent), task)

    def _drop_speculation(self) -> None:
        if self.speculation is not None:
            self.speculation[1].cancel()
            self.speculation = None

    async def _final(self, start: int, sample: int, cut: bool) -> Transcript:
        if self.speculation is not None and self.speculation[0] == (start, sample):
            task, self.speculation = self.speculation[1], None
            return await task
        self._drop_speculation()
        return await self._decode(self._job(start, sample, tail=not cut))

    async def _decode(self, job: FinalJob) -> Transcript:
        end = job.speech_end_s
        found = await self.engine.transcribe(
            job.clip, self.vote.fixed, prompt=job.prompt, speech_end=end, said=job.said
        )
        again = self.vote.overrule(found.language, found.language_probability)
        if again is not None:
            found = await self.engine.transcribe(
                job.clip, again, prompt=job.prompt, speech_end=end, said=job.said
            )
        kept = job.words_of_utterance(found.utterances)
        if kept is None:  # the split failed: decode the utterance alone
            return await self._decode(job.alone())
        repeated = job.repeated_final(kept)
        if repeated is None:
            return found._replace(utterances=kept)
        # a real repeat, or the decoder reading its prefix out again: alone, the
        # utterance says it again only if it was said; if it was, the words heard
        # in their call are the better ones (alone, "Contraseña incorrecta" came
        # out "Contrese ni en correcta" on a real call, and later finals copied it)
        heard_alone = await self._decode(job.alone())
        if holds_words(heard_alone.utterances, repeated):
            return found._replace(utterances=kept)
        return heard_alone

    async def _boundary(self, boundary: Boundary) -> Events:
        kind, sample = boundary.kind, boundary.sample
        if kind == "start":
            pre_roll = 0 if boundary.cut else int(PRE_ROLL_S * SAMPLE_RATE)
            self.utterance_start = max(self.audio.base, sample - pre_roll)
            self.voice_start = sample
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
        utterances, language, probability = await self._final(start, sample, boundary.cut)
        utterance = merge(utterances, 0.0)
        if utterance is not None:
            utterance = voiced(utterance, _seconds(self.voice_start), _seconds(sample))
            self.vote.observe(language, probability)
        if utterance is not None and utterance.text.strip():
            self._remember(start, sample, utterance.text)
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
            DraftRequest(
                self.audio.clip(start, now), self.vote.language, self.agreement.stable_text
            )
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
