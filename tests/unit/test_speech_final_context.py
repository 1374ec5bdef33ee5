"""What a channel's final is decoded from: the words before a short utterance, and
how Whisper's answer over them maps back to stream time."""

from __future__ import annotations

import numpy as np
import pytest

from percept.speech.audio import SAMPLE_RATE
from percept.speech.backends import Utterance, Word
from percept.speech.engine import SpeechEngine
from percept.speech.final_context import CONTEXT_S
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
        channel.audio.keep_from(channel.audio.end - int((PRE_ROLL_S + CONTEXT_S) * SR))
    return at


def test_a_short_utterance_long_after_the_channels_last_words_hears_them_spliced_before_it(
    channel: ChannelRecognizer,
) -> None:
    """On a stereo call the other side speaks between a channel's turns: the audio
    just before a short turn is a quiet line, so the channel's last words come
    spliced in before a pause, and their text is not the prompt as well."""
    first = heard(channel, 1.0, WORDS)
    channel._remember(first - int(0.1 * SR), first, "an even earlier final")
    channel._remember(first, first + SR, "earlier words")
    heard(channel, 6.0, 0.0)  # the other side's turn: this channel's line is quiet
    voice = heard(channel, 1.5, LATER, idle=False)
    heard(channel, TAIL_S, 0.0, idle=False)
    start = voice - int(PRE_ROLL_S * SR)
    job = channel._job(start, voice + int(1.5 * SR))

    pause = int(SPLICED_PAUSE_S * SR) + int(PRE_ROLL_S * SR)
    assert np.all(job.clip[:SR] == WORDS)
    assert np.all(job.clip[SR : SR + pause] == 0.0)
    assert np.all(job.clip[SR + pause : SR + pause + int(1.5 * SR)] == LATER)
    assert len(job.clip) == SR + pause + int((1.5 + TAIL_S) * SR)
    assert job.prompt == "an even earlier final"  # "earlier words" are in the audio
    assert job.has_context and job.said_before == "earlier words"

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


def test_a_short_utterance_right_after_words_hears_the_audio_before_it_as_it_is(
    channel: ChannelRecognizer,
) -> None:
    heard(channel, 3.0, 0.0)
    first = heard(channel, 2.0, WORDS)
    channel._remember(first, first + 2 * SR, "earlier words")
    heard(channel, 1.0, 0.0)
    voice = heard(channel, 1.0, LATER, idle=False)
    heard(channel, TAIL_S, 0.0, idle=False)
    start = voice - int(PRE_ROLL_S * SR)
    job = channel._job(start, voice + SR)

    assert job.context_from == start - int(CONTEXT_S * SR)  # no splice: one stretch
    assert np.array_equal(
        job.clip, channel.audio.clip(job.context_from, voice + SR + int(TAIL_S * SR))
    )
    assert job.prompt == ""


def test_a_long_utterance_is_decoded_alone_with_the_earlier_finals_as_prompt(
    channel: ChannelRecognizer,
) -> None:
    first = heard(channel, 1.0, WORDS)
    channel._remember(first, first + SR, "earlier words")
    voice = heard(channel, 6.0, LATER, idle=False)
    heard(channel, TAIL_S, 0.0, idle=False)
    job = channel._job(voice, voice + 6 * SR)

    assert not job.has_context and job.prompt == "earlier words"
    assert np.all(job.clip[: 6 * SR] == LATER)


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
    voice = heard(channel, 1.5, LATER, idle=False)
    heard(channel, TAIL_S, 0.0, idle=False)
    job = channel._job(voice - int(PRE_ROLL_S * SR), voice + int(1.5 * SR))
    at = voice / SR - job.context_from / SR  # the voice, in clip seconds

    def answer(*context: Word) -> list[Utterance]:
        said = (Word("message", at, at + 0.5, 0.9), Word("saved.", at + 0.5, at + 1.0, 0.9))
        return [Utterance("…", 0.0, at + 1.0, (*context, *said), 0.9)]

    assert job.words_of_utterance(answer(Word("Your", 0.0, 1.5, 0.9))) is None
    kept = job.words_of_utterance(answer(Word("disturb.", 2.0, 2.5, 0.9)))
    assert kept is not None and [w.text for w in kept[0].words] == ["message", "saved."]
    kept = job.words_of_utterance(answer())  # no words in the context: nothing to doubt
    assert kept is not None and [w.text for w in kept[0].words] == ["message", "saved."]
