"""The parts of live recognition: agreement, loop trimming, VAD endpointing, the shared engine."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from speech_audio import floats16k, speak

from percept.speech.agreement import LocalAgreement
from percept.speech.audio import SAMPLE_RATE, Samples
from percept.speech.backends import DraftRequest, Said, Transcript, Utterance, drop_loops
from percept.speech.endpointing import Endpointer
from percept.speech.engine import SpeechEngine


def test_local_agreement_commits_what_two_hypotheses_share_and_never_takes_it_back() -> None:
    agreement = LocalAgreement()
    assert agreement.update("I would like to") == ("", "I would like to")
    assert agreement.update("I would like to purchase two lamp") == (
        "I would like to",
        "I would like to purchase two lamp",
    )
    stable, text = agreement.update("I would like to purchase two laptops, my budget")
    assert stable == "I would like to purchase two"
    # drafts continue the stable text (it is their decoder prefix); should one still
    # rewrite a stable word, even its punctuation, the stable text stands
    stable, text = agreement.update("I would like two purchase two. laptops. My budget is")
    assert stable.startswith("I would like to purchase two")
    assert text.startswith("I would like to purchase two laptops")


def test_local_agreement_keeps_the_last_word_open() -> None:
    agreement = LocalAgreement()
    agreement.update("buy two")
    stable, _ = agreement.update("buy two")
    assert stable == "buy"  # "two" may still be cut by the chunk edge ("twenty")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Can we schedule a demo next week? Can we schedule a demo next week? Can we",
            "Can we schedule a demo next week?",
        ),
        ("thank you thank you thank you", "thank you"),
        (  # rounds of one loop that differ in a plural "s"
            "thank you for your patient. Thank you for your patients.",
            "thank you for your patient.",
        ),
        (  # rounds of one loop with a bare ellipsis between them
            "You are no longer muted … You are no longer muted. You are no longer muted…",
            "You are no longer muted",
        ),
        (  # a stray word after the first round (tiny.en on a real prompt, one CPU)
            "Please try again. Master... Please try again. Please try again.",
            "Please try again.",
        ),
        (  # a loop that the same words only precede, with more between, starts later
            "Please try again after the tone. Please try again. Please try again.",
            "Please try again after the tone. Please try again.",
        ),
        ("I want two laptops and two laptop bags", "I want two laptops and two laptop bags"),
        ("I had had enough", "I had had enough"),  # one repeated word is language
        ("the phone, the phone case", "the phone, the phone case"),
    ],
)
def test_hallucinated_loops_are_cut_at_the_first_repeat(text: str, expected: str) -> None:
    assert drop_loops(text) == expected


@pytest.fixture(scope="module")
def sentence(tmp_path_factory: pytest.TempPathFactory) -> Samples:
    return floats16k(speak("Please call me back tomorrow.", tmp_path_factory.mktemp("s") / "s.wav"))


def test_endpointer_finds_each_utterance_in_a_live_stream(sentence: Samples) -> None:
    gap = np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([gap, sentence, gap, sentence, gap])
    endpointer = Endpointer(min_silence_s=0.5)
    boundaries = []
    for i in range(0, len(audio), 1234):  # chunk sizes unrelated to VAD windows
        boundaries += endpointer.push(audio[i : i + 1234])
    boundaries += endpointer.flush()
    kinds = [b.kind for b in boundaries]
    assert kinds == ["start", "end", "start", "end"], kinds
    length = len(sentence) / SAMPLE_RATE
    starts = [b.sample / SAMPLE_RATE for b in boundaries if b.kind == "start"]
    ends = [b.sample / SAMPLE_RATE for b in boundaries if b.kind == "end"]
    # espeak leaves some silence around the words; the VAD sees the speech inside
    assert starts[0] == pytest.approx(1.0, abs=0.3)
    assert ends[0] == pytest.approx(1.0 + length, abs=0.4)
    assert starts[1] == pytest.approx(2.0 + length, abs=0.3)


def test_endpointer_cuts_endless_speech_at_the_longest_utterance(sentence: Samples) -> None:
    endpointer = Endpointer(max_utterance_s=2.0)
    speech = np.tile(sentence, 4)  # no pause long enough to end an utterance
    kinds = [b.kind for b in endpointer.push(speech)]
    assert kinds.count("end") >= 2
    assert kinds[:3] == ["start", "end", "start"]


def test_endpointer_ignores_clicks() -> None:
    endpointer = Endpointer()
    rng = np.random.default_rng(0)
    click = (rng.standard_normal(SAMPLE_RATE // 20) * 0.5).astype(np.float32)
    quiet = np.zeros(SAMPLE_RATE * 2, np.float32)
    kinds = [b.kind for b in endpointer.push(np.concatenate([quiet, click, quiet]))]
    assert "end" not in kinds


class SlowTranscriber:
    """A stand-in model for the queue's plumbing: takes `seconds` per call, records calls."""

    name = "slow"
    english_only = True

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls: list[str] = []
        self.running = threading.Lock()

    def transcribe(
        self,
        audio: Samples,
        language: str | None,
        *,
        prompt: str = "",
        speech_end: float | None = None,
        said: Sequence[Said] = (),
    ) -> Transcript:
        assert self.running.acquire(blocking=False), "two model calls at once"
        try:
            time.sleep(self.seconds)
            self.calls.append("final")
            return Transcript([Utterance(f"{len(audio)}", 0, 1, (), 1.0)], "en")
        finally:
            self.running.release()

    def draft(self, requests: list[DraftRequest]) -> list[tuple[str, str]]:
        assert self.running.acquire(blocking=False), "two model calls at once"
        try:
            time.sleep(self.seconds)
            self.calls.append(f"draft x{len(requests)}")
            return [(r.prefix + " more", "en") for r in requests]
        finally:
            self.running.release()


async def test_engine_runs_finals_first_batches_drafts_and_skips_them_when_behind() -> None:
    model = SlowTranscriber(0.2)
    engine = SpeechEngine(model, max_batch=4)
    audio = np.zeros(100, np.float32)
    try:
        first = asyncio.create_task(engine.transcribe(audio, None))
        await asyncio.sleep(0.05)  # the model is busy with it
        drafts = [
            asyncio.create_task(engine.draft(DraftRequest(audio, None, f"d{i}"))) for i in range(3)
        ]
        final = asyncio.create_task(engine.transcribe(audio[:50], None))
        await asyncio.sleep(0)
        # behind: a final waits, so one more draft is skipped at once
        assert await engine.draft(DraftRequest(audio, None, "late")) is None
        assert (await first)[0][0].text == "100"
        assert (await final)[0][0].text == "50"
        assert [await d for d in drafts] == [(f"d{i} more", "en") for i in range(3)]
        # the waiting final ran before the drafts, which ran as one batch
        assert model.calls == ["final", "final", "draft x3"]
    finally:
        await engine.close()


async def test_engine_bounds_the_finals_waiting() -> None:
    model = SlowTranscriber(0.1)
    engine = SpeechEngine(model, max_waiting_finals=2)
    audio = np.zeros(10, np.float32)
    try:
        tasks = [asyncio.create_task(engine.transcribe(audio, None)) for _ in range(5)]
        await asyncio.sleep(0.05)
        assert engine.metrics.queued._value.get() <= 2  # the rest wait outside the queue
        await asyncio.gather(*tasks)
        assert model.calls == ["final"] * 5
    finally:
        await engine.close()


async def test_a_cancelled_call_does_not_reach_the_model() -> None:
    model = SlowTranscriber(0.2)
    engine = SpeechEngine(model)
    audio = np.zeros(10, np.float32)
    try:
        busy = asyncio.create_task(engine.transcribe(audio, None))
        await asyncio.sleep(0.05)
        gone = asyncio.create_task(engine.transcribe(audio, None))
        await asyncio.sleep(0.01)
        gone.cancel()
        await busy
        await asyncio.sleep(0.3)
        assert model.calls == ["final"]
    finally:
        await engine.close()


# The real Asterisk prompts that looped in both of two passes over all 163 English
# prompts with the trimmed window below (3 more did in one pass only: the decoder is
# not deterministic run to run, which is also why one call loops and the next not).
LOOPING_PROMPTS = (
    "confbridge-locked",
    "confbridge-pin-bad",
    "confbridge-unmuted",
    "number-not-answering",
    "please-try-again",
    "please-try-call-later",
    "queue-thankyou",
    "vm-pls-try-again",
)


@pytest.mark.slow
def test_the_loop_guard_cuts_real_repetition_loops_to_their_first_round(tmp_path: Path) -> None:
    """Real audio that makes tiny.en loop: Asterisk prompts ("Thank you for your
    patience.") decoded with the encoder cut to the audio plus 3 s (an old speed-up
    of ours) repeat to the end of the window. cut_loops keeps one round with its
    word times, and the service's own decoding (Whisper's whole window) never loops."""
    import real_media
    from faster_whisper import WhisperModel

    from percept.models import model_store
    from percept.runtime.settings import Settings
    from percept.speech.audio import decode_raw
    from percept.speech.backends import FasterWhisperTranscriber, Word, cut_loops

    class TrimmedWindow(WhisperModel):  # type: ignore[misc]
        def encode(self, features: Any) -> Any:
            used = np.any(features != 0, axis=tuple(range(features.ndim - 1)))
            keep = min(features.shape[-1], int(np.flatnonzero(used)[-1]) + 301) // 2 * 2
            return super().encode(np.ascontiguousarray(features[..., :keep]))

    model = model_store(Settings(data_dir=tmp_path)).resolve("whisper-tiny.en").path
    looping = TrimmedWindow(str(model), device="cpu", compute_type="int8", cpu_threads=2)
    service = FasterWhisperTranscriber(model, device="cpu")
    clips = [c for c in real_media.prompts("en") if c.name in LOOPING_PROMPTS]
    assert len(clips) == len(LOOPING_PROMPTS)
    loops = 0
    for clip in clips:
        audio = decode_raw(clip.pcm.tobytes(), clip.rate, 1)
        segments, _ = looping.transcribe(
            audio, language="en", word_timestamps=True, vad_filter=True, beam_size=5
        )
        raw = [
            Utterance(
                s.text.strip(),
                s.start,
                s.end,
                tuple(Word(w.word.strip(), w.start, w.end, w.probability) for w in s.words),
                1.0,
            )
            for s in segments
        ]
        said = " ".join(u.text for u in raw)
        looped = drop_loops(said) != said
        loops += looped
        guarded = cut_loops(raw)
        text = " ".join(u.text for u in guarded)
        assert drop_loops(text) == text, (said, text)
        if looped:  # one round kept, near what was said (the trimmed window's other
            # mistakes, e.g. "Please draw again. Please try again.", are not loops)
            assert real_media.wer(clip.text, text, "en") <= 0.5, (clip.text, said, text)
        assert [w.text for u in guarded for w in u.words] == text.split()
        finals, _, _ = service.transcribe(audio, "en")
        own = " ".join(u.text for u in finals)
        assert drop_loops(own) == own and real_media.wer(clip.text, own, "en") <= 0.25, own
    assert loops >= 1, "none of the prompts looped: the guard was not exercised"


@pytest.mark.slow
def test_a_final_decodes_no_window_over_the_audio_after_its_speech(tmp_path: Path) -> None:
    """faster-whisper starts its next 30 s window at the last word it timed: for a
    final, a window over its own last half second, which cost an encoding and made
    up a sentence ("Thank you very much.") that the final then dropped. Given where
    the speech ends, the backend decodes no such window, and the words are the same."""
    import random

    import real_media

    from percept.models import model_store
    from percept.runtime.settings import Settings
    from percept.speech.audio import decode_raw
    from percept.speech.backends import TRAILING_S, FasterWhisperTranscriber
    from percept.speech.final_context import hallucinated

    model = model_store(Settings(data_dir=tmp_path)).resolve("whisper-tiny.en").path
    service = FasterWhisperTranscriber(model, device="cpu")
    windows = 0
    encode = service.model.encode

    def counted(features: Any) -> Any:
        nonlocal windows
        encoded = encode(features)  # the backend's check may stop the decode first
        windows += 1
        return encoded

    service.model.encode = counted
    noise = np.random.default_rng(0)
    saved = 0
    clips = random.Random(0).sample(real_media.prompts("en"), 9)
    for before, clip in itertools.pairwise(clips):
        # as a short final is decoded: the prompt before it and a pause, the prompt,
        # 0.2 s of quiet line; the earlier prompt's words are Whisper's prompt
        quiet = [noise.normal(0, 16, int(s * clip.rate)).astype(np.int16) for s in (0.8, 0.2)]
        pcm = np.concatenate([before.pcm, quiet[0], clip.pcm, quiet[1]])
        audio = decode_raw(pcm.tobytes(), clip.rate, 1)
        speech_end = len(audio) / SAMPLE_RATE - 0.2
        windows = 0
        # the same final's decode, with no end to stop its windows at
        stock = service.transcribe(audio, "en", prompt=before.text, speech_end=math.inf)
        stock_windows, windows = windows, 0
        final = service.transcribe(audio, "en", prompt=before.text, speech_end=speech_end)
        assert 1 <= windows <= stock_windows
        saved += stock_windows - windows
        kept = [u.text for u in stock.utterances if not hallucinated(u, speech_end)]
        assert [u.text for u in final.utterances if not hallucinated(u, speech_end)] == kept
    # a window is still decoded where the first one's words end earlier than that
    assert saved >= 2, f"too few prompts had a window within {TRAILING_S} s of their end"


def test_a_final_with_an_intent_becomes_signals_keyed_by_caller_and_call() -> None:
    from percept.speech.redacting import CallRedaction
    from percept.speech.signals import utterance_signals
    from percept.understanding.redaction import Redactor
    from percept.v1 import common_pb2, speech_pb2

    config = speech_pb2.RecognitionConfig(
        call_id="c-1", caller=common_pb2.IdentityKeys(phone="+14155550123"), campaign_id="spring"
    )
    final = speech_pb2.RecognitionEvent(
        type=speech_pb2.RecognitionEvent.EVENT_TYPE_FINAL,
        transcript="I want two phones, mail me at ana@example.com",
        language_code="en",
        intents=[common_pb2.Intent(name="purchase_intent", confidence=0.9)],
        entities=[
            common_pb2.Entity(type="product", normalized_value="phone", confidence=0.9),
            common_pb2.Entity(type="quantity", normalized_value="2", confidence=0.8),
            common_pb2.Entity(type="email", normalized_value="ana@example.com", confidence=0.9),
        ],
    )
    contacts = CallRedaction(Redactor(())).apply(final)  # the final's contacts, kept clear
    signals = utterance_signals(config, final, contacts)
    kinds = [(s.kind, s.name, s.value) for s in signals]
    assert kinds == [
        (common_pb2.SIGNAL_KIND_INTENT, "purchase_intent", ""),
        (common_pb2.SIGNAL_KIND_ENTITY, "product", "phone"),
        (common_pb2.SIGNAL_KIND_ENTITY, "quantity", "2"),
        (common_pb2.SIGNAL_KIND_CONTACT_CAPTURED, "email", ""),
    ]
    assert signals[2].numeric_value == 2
    assert all(s.identity.phone == "+14155550123" and s.identity.call_id == "c-1" for s in signals)
    assert signals[3].identity.email == "ana@example.com"  # links the address to the caller
    assert all(s.campaign_id == "spring" and s.source == common_pb2.SOURCE_SPEECH for s in signals)
    assert len({s.signal_id for s in signals}) == 4
    # without an intent only the contact is worth a signal; without a caller, nothing
    del final.intents[:]
    assert [s.kind for s in utterance_signals(config, final, contacts)] == [
        common_pb2.SIGNAL_KIND_CONTACT_CAPTURED
    ]
    assert utterance_signals(speech_pb2.RecognitionConfig(), final, contacts) == []


def test_audio_buffer_keeps_stream_positions_across_growth_and_trimming() -> None:
    from percept.speech.audio_buffer import AudioBuffer

    buffer = AudioBuffer(capacity=4)
    stream = np.arange(100, dtype=np.float32)
    for i in range(0, 60, 7):  # grows past its capacity several times
        buffer.append(stream[i : min(i + 7, 60)])
    assert buffer.end == 60
    assert np.array_equal(buffer.clip(10, 20), stream[10:20])
    held = buffer.clip(40, 50)
    buffer.keep_from(45)  # the front is dropped in place...
    assert (buffer.base, buffer.end) == (45, 60)
    assert np.array_equal(held, stream[40:50])  # ...without touching clips given out
    assert np.array_equal(buffer.clip(0, 100), stream[45:60])  # clamped to what is kept
    buffer.append(stream[60:100])
    assert np.array_equal(buffer.clip(50, 100), stream[50:100])
    buffer.keep_from(1000)
    assert (buffer.base, buffer.end) == (100, 100) and len(buffer.clip(0, 200)) == 0
