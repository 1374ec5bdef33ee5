"""What a channel's final is decoded from: the window of its audio with the finals
already given for it, and how Whisper's answer over them maps back to stream time."""

from __future__ import annotations

import numpy as np
import pytest

from percept.speech.audio import SAMPLE_RATE
from percept.speech.backends import Said, Transcript, Utterance, Word
from percept.speech.endpointing import Boundary
from percept.speech.engine import SpeechEngine
from percept.speech.final_context import LEAD_S, WINDOW_S, FinalJob
from percept.speech.streaming import (
    PRE_ROLL_S,
    SPLICED_PAUSE_S,
    TAIL_S,
    ChannelRecognizer,
    StreamOptions,
)

SR = SAMPLE_RATE
WORDS, LATER = 0.5, -0.5  # sample values that say whose audio a clip holds


def samples(seconds: float, value: float = 0.0) -> np.ndarray:
    return np.full(int(seconds * SR), value, np.float32)


@pytest.fixture
def channel() -> ChannelRecognizer:
    engine = SpeechEngine(object())  # type: ignore[arg-type]  # _job decodes nothing
    return ChannelRecognizer(engine, StreamOptions(), lambda *a: None)  # type: ignore[arg-type]


def heard(channel: ChannelRecognizer, seconds: float, value: float, *, idle: bool = True) -> int:
    """Appends audio as the channel keeps it (only the last seconds between
    utterances, all of an utterance in progress); where it starts."""
    at = channel.audio.end
    channel.audio.append(samples(seconds, value))
    if idle:
        channel.audio.keep_from(channel.audio.end - int((PRE_ROLL_S + WINDOW_S) * SR))
    return at


def utterance(
    channel: ChannelRecognizer, seconds: float, value: float = LATER
) -> tuple[int, FinalJob]:
    """An utterance heard (its tail too) and the job its final is decoded from;
    where its voice starts."""
    voice = heard(channel, seconds, value, idle=False)
    heard(channel, TAIL_S, 0.0, idle=False)
    return voice, channel._job(max(0, voice - int(PRE_ROLL_S * SR)), voice + int(seconds * SR))


def test_a_short_utterance_long_after_the_channels_last_words_hears_them_spliced_before_it(
    channel: ChannelRecognizer,
) -> None:
    """On a stereo call the other side speaks between a channel's turns: the audio
    just before a short turn is a quiet line, so the channel's last words come
    spliced in before a pause, and their text is not the prompt as well."""
    first = heard(channel, 1.0, WORDS)
    channel._remember(first - int(0.1 * SR), first, "an even earlier final")
    channel._remember(first, first + SR, "earlier words")
    heard(channel, WINDOW_S, 0.0)  # the other side's turn: this channel's line is quiet
    voice, job = utterance(channel, 1.5)

    pause = int(SPLICED_PAUSE_S * SR) + int(PRE_ROLL_S * SR)
    assert np.all(job.clip[:SR] == WORDS)
    assert np.all(job.clip[SR : SR + pause] == 0.0)
    assert np.all(job.clip[SR + pause : SR + pause + int(1.5 * SR)] == LATER)
    assert len(job.clip) == SR + pause + int((1.5 + TAIL_S) * SR)
    assert job.prompt == "an even earlier final"  # "earlier words" are in the audio
    assert job.has_context and job.said_before == "earlier words"
    assert job.said == (Said(0.0, 1.0, "earlier words"),)  # Whisper's prefix

    # Whisper's answer in clip seconds: the spliced words and the utterance's
    clip_voice = (SR + pause) / SR
    segments = [
        Utterance(
            "Earlier words.",
            0.0,
            1.0,
            (Word("Earlier", 0.0, 0.4, 0.9), Word("words.", 0.4, 1.0, 0.9)),
            0.9,
        ),
        Utterance(
            "Buy it.",
            clip_voice,
            clip_voice + 1.2,
            (
                Word("Buy", clip_voice, clip_voice + 0.5, 0.9),
                Word("it.", clip_voice + 0.5, clip_voice + 1.2, 0.9),
            ),
            0.9,
        ),
    ]
    kept = job.words_of_utterance(segments)
    assert kept is not None and [w.text for u in kept for w in u.words] == ["Buy", "it."]
    assert kept[0].words[0].start == pytest.approx(voice / SR)  # stream time
    assert kept[0].words[-1].end == pytest.approx(voice / SR + 1.2)


def test_an_utterance_is_decoded_in_the_window_of_the_finals_before_it_as_they_were_heard(
    channel: ChannelRecognizer,
) -> None:
    """The finals that started within WINDOW_S of the utterance's end are in the
    clip as the channel heard them, and are Whisper's prefix (clip seconds); the
    finals before them are the prompt."""
    oldest = heard(channel, 1.0, WORDS)
    channel._remember(oldest, oldest + SR, "long ago.")
    heard(channel, WINDOW_S - 10.0, 0.0)
    first = heard(channel, 2.0, WORDS)
    channel._remember(first, first + 2 * SR, "earlier words.")
    heard(channel, 1.0, 0.0)
    second = heard(channel, 1.5, WORDS)
    channel._remember(second, second + int(1.5 * SR), "more words.")
    heard(channel, 1.0, 0.0)
    voice, job = utterance(channel, 6.0)

    assert job.context_from == first  # one stretch from the first final in the window
    assert np.array_equal(job.clip, channel.audio.clip(first, voice + 6 * SR + int(TAIL_S * SR)))
    assert job.said == (Said(0.0, 2.0, "earlier words."), Said(3.0, 4.5, "more words."))
    assert job.prompt == "long ago."
    assert job.has_context and job.said_before == "more words."


def test_an_utterance_long_after_the_channels_last_words_is_decoded_alone_when_long(
    channel: ChannelRecognizer,
) -> None:
    """Alone in its window, a long utterance is heard from LEAD_S before its voice
    (the VAD may hear a soft first word late), and all Whisper hears is its."""
    first = heard(channel, 1.0, WORDS)
    channel._remember(first, first + SR, "earlier words")
    heard(channel, WINDOW_S, 0.0)
    voice, job = utterance(channel, 6.0)

    assert not job.has_context and job.prompt == "earlier words" and job.said == ()
    lead = int(LEAD_S * SR)
    assert job.context_from == voice - lead
    assert np.all(job.clip[:lead] == 0.0) and np.all(job.clip[lead : lead + 6 * SR] == LATER)
    soft_first_word = Word("Por", 0.55, 0.8, 0.9)  # before the VAD's voice and pre-roll
    heard_words = [Utterance("Por favor.", 0.55, 1.5, (soft_first_word,), 0.9)]
    kept = job.words_of_utterance(heard_words)
    assert kept is not None and [w.text for u in kept for w in u.words] == ["Por"]


def test_the_lead_before_an_utterance_stops_at_the_channels_last_final_and_the_streams_start(
    channel: ChannelRecognizer,
) -> None:
    heard(channel, 0.4, 0.0, idle=False)  # the call starts with its first words
    _, job = utterance(channel, 2.0, WORDS)
    assert job.context_from == 0 and len(job.clip) == int((0.4 + 2.0 + TAIL_S) * SR)

    # a long utterance just after a long final: that final began outside its window
    first = heard(channel, 9.0, WORDS)
    channel._remember(first, first + 9 * SR, "a long final")
    heard(channel, 0.6, 0.0)
    _, job = utterance(channel, 20.0)
    assert job.said == () and job.context_from == first + 9 * SR  # not its words
    assert np.all(job.clip[: int(0.6 * SR)] == 0.0)


def test_a_decode_that_heard_none_of_the_contexts_words_is_not_split_by_time(
    channel: ChannelRecognizer,
) -> None:
    """Whisper may skip the earlier words in the context's audio and stretch the
    utterance's first word over it (tiny.en on a real call: "Your" over the end of
    "Do not disturb."); dropping it as context would lose it, so the utterance is
    decoded alone instead."""
    heard(channel, 3.0, 0.0)
    first = heard(channel, 1.5, WORDS)
    channel._remember(first, first + int(1.5 * SR), "Do not disturb.")
    heard(channel, 1.0, 0.0)
    voice, job = utterance(channel, 1.5)
    assert job.context_from == first
    at = voice / SR - job.context_from / SR  # the voice, in clip seconds

    def answer(*context: Word) -> list[Utterance]:
        said = (Word("message", at, at + 0.5, 0.9), Word("saved.", at + 0.5, at + 1.0, 0.9))
        return [Utterance("…", 0.0, at + 1.0, (*context, *said), 0.9)]

    assert job.words_of_utterance(answer(Word("Your", 0.0, 1.5, 0.9))) is None
    kept = job.words_of_utterance(answer(Word("disturb.", 1.0, 1.5, 0.9)))
    assert kept is not None and [w.text for w in kept[0].words] == ["message", "saved."]
    kept = job.words_of_utterance(answer())  # no words in the context: nothing to doubt
    assert kept is not None and [w.text for w in kept[0].words] == ["message", "saved."]


class Decoder:
    """Answers a final's decode: with its prefix, and alone (no prefix)."""

    def __init__(self, in_context: list[Utterance], alone: list[Utterance]) -> None:
        self.in_context, self.alone = in_context, alone
        self.calls = 0

    async def transcribe(
        self, audio: np.ndarray, language: str | None, *, said: tuple[Said, ...] = (), **_: object
    ) -> Transcript:
        self.calls += 1
        return Transcript(self.in_context if said else self.alone, "es")


def spoken(text: str, start: float, seconds: float) -> Utterance:
    words = text.split()
    step = seconds / len(words)
    timed = tuple(
        Word(w, start + n * step, start + (n + 1) * step, 0.9) for n, w in enumerate(words)
    )
    return Utterance(text, start, start + seconds, timed, 0.9)


@pytest.mark.parametrize(
    ("in_context", "alone", "final", "decodes"),
    [
        # the decoder read its prefix out again (case and stops aside): alone, the
        # new words come back
        (
            "marque el Asterisco, para anular",
            "Por favor ingrese la clave.",
            "Por favor ingrese la clave.",
            2,
        ),
        # said again: alone it says so too, and the words heard in the call stay
        (
            "Contraseña incorrecta. Marque el asterisco para anular.",
            "Contrese ni en correcta. Marque el asterisco para anular.",
            "Contraseña incorrecta. Marque el asterisco para anular.",
            2,
        ),
        # three words in common are no final read out: no witness needed
        ("Marque el número.", "Marque el número.", "Marque el número.", 1),
    ],
    ids=["copy", "said-again", "no-repeat"],
)
async def test_an_utterance_that_holds_a_final_of_its_prefix_is_heard_alone_to_tell_a_copy(
    channel: ChannelRecognizer, in_context: str, alone: str, final: str, decodes: int
) -> None:
    """After a misheard final the decoder may read its prefix out again instead of
    the new audio; a real repeat comes back when the utterance is decoded alone,
    and then the words heard in their call are kept."""
    first = heard(channel, 2.0, WORDS)
    channel._remember(first, first + 2 * SR, "Marque el asterisco para anular.")
    heard(channel, 1.0, 0.0)
    voice, job = utterance(channel, 3.0)
    at = voice / SR - job.context_from / SR
    context = spoken("Marque el asterisco para anular.", 0.1, 1.8)
    decoder = Decoder([context, spoken(in_context, at, 3.0)], [spoken(alone, 0.3, 3.0)])
    channel.engine = decoder  # type: ignore[assignment]

    found = await channel._decode(job)

    assert " ".join(u.text for u in found.utterances) == final
    assert decoder.calls == decodes


class EndlessSound:
    """An endpointer on hold music: speech from the first sample, never a pause, cut
    every `cut_s` as the real one cuts a long utterance."""

    silent_since = None

    def __init__(self, cut_s: float) -> None:
        self.cut, self.position = int(cut_s * SR), 0

    def push(self, chunk: np.ndarray) -> list[Boundary]:
        before, self.position = self.position, self.position + len(chunk)
        found = [Boundary("start", 0)] if before == 0 else []
        cuts = range((before // self.cut + 1) * self.cut, self.position + 1, self.cut)
        for at in cuts:
            found += [Boundary("end", at, cut=True), Boundary("start", at, cut=True)]
        return found

    def flush(self) -> list[Boundary]:
        return []


async def test_a_channel_that_never_falls_silent_keeps_a_window_of_audio_not_the_call() -> None:
    """Hold music or a monologue is cut every max_utterance_s and never falls silent:
    the audio kept must still be bounded, not grow by 64 KB a second for the call."""
    decoder = Decoder([], [])
    options = StreamOptions(interim_results=False)
    channel = ChannelRecognizer(
        decoder,  # type: ignore[arg-type]
        options,
        lambda *a: None,  # type: ignore[arg-type]
        endpointer=EndlessSound(options.max_utterance_s),  # type: ignore[arg-type]
    )
    kept = []
    for _ in range(1800):  # 3 minutes in 100 ms chunks
        async for _event in channel.push(samples(0.1, WORDS)):
            pass
        kept.append((channel.audio.end - channel.audio.base) / SR)
    assert decoder.calls >= 7  # a final decoded at every cut
    assert max(kept) <= options.max_utterance_s + PRE_ROLL_S + WINDOW_S + 0.1
