"""A call's summary from its finals: talk time, silences, interruptions, sentiment."""

from __future__ import annotations

import pytest

from percept.speech.call_summary import CallSummarizer
from percept.understanding.sentiment import parse_sentiment_examples
from percept.v1 import common_pb2
from percept.v1 import speech_pb2 as sp

AGENT, CUSTOMER = sp.CHANNEL_ROLE_AGENT, sp.CHANNEL_ROLE_CUSTOMER
FEELINGS = {
    "+": common_pb2.SENTIMENT_POSITIVE,
    "0": common_pb2.SENTIMENT_NEUTRAL,
    "-": common_pb2.SENTIMENT_NEGATIVE,
}


def final(
    channel: int, start: float, end: float, words: int, feeling: str, score: float
) -> sp.RecognitionEvent:
    event = sp.RecognitionEvent(
        type=sp.RecognitionEvent.EVENT_TYPE_FINAL,
        channel=channel,
        role=AGENT if channel == 0 else CUSTOMER,
        transcript=" ".join(["word"] * words),
        words=[sp.WordInfo(word=" word") for _ in range(words)],
        sentiment=FEELINGS[feeling],
        sentiment_score=score,
    )
    event.start_offset.FromNanoseconds(int(start * 1e9))
    event.end_offset.FromNanoseconds(int(end * 1e9))
    return event


def seconds(d: object) -> float:
    return d.ToNanoseconds() / 1e9  # type: ignore[attr-defined, no-any-return]


def test_a_call_is_summed_up_per_role() -> None:
    summarizer = CallSummarizer("c-1", silence_s=2.0)
    for event in [
        final(0, 1.0, 4.0, 10, "0", 0.0),    # agent greets
        final(1, 4.5, 7.5, 6, "-", -0.6),    # customer complains
        final(0, 7.2, 9.0, 5, "0", 0.1),     # agent starts 0.3 s early: no barge-in
        final(1, 8.0, 10.0, 4, "-", -0.8),   # customer cuts in, 1 s into the agent's turn
        final(0, 13.0, 15.0, 6, "+", 0.7),   # after a 3 s silence
        final(1, 15.5, 17.5, 5, "+", 0.9),   # the customer ends happy
    ]:  # fmt: skip
        summarizer.add(event)
    summarizer.add(sp.RecognitionEvent(type=sp.RecognitionEvent.EVENT_TYPE_PARTIAL, transcript="x"))
    summary = summarizer.summary(20.0)
    assert summary.call_id == "c-1" and seconds(summary.duration) == 20.0
    agent, customer = summary.roles
    assert (agent.role, customer.role) == (AGENT, CUSTOMER)
    assert seconds(agent.talk_time) == pytest.approx(6.8)
    assert seconds(customer.talk_time) == pytest.approx(7.0)
    assert customer.words_per_minute == pytest.approx(15 / 7.0 * 60, abs=0.1)
    assert (agent.interruptions, customer.interruptions, summary.interruptions) == (0, 1, 1)
    # silences of 2 s or more: 10-13 and 17.5-20 (the first second is shorter)
    assert summary.silences == 2
    assert seconds(summary.non_talk_time) == pytest.approx(5.5)
    assert seconds(summary.longest_silence) == pytest.approx(3.0)
    assert customer.sentiment_score == pytest.approx((-0.6 - 0.8 + 0.9) / 3, abs=1e-3)
    assert customer.sentiment == common_pb2.SENTIMENT_NEUTRAL
    assert customer.sentiment_trend == pytest.approx(0.9 - -0.6)  # it got better
    assert (customer.positive_utterances, customer.negative_utterances) == (1, 2)


def test_a_call_with_no_speech_is_zeros_not_an_error() -> None:
    summary = CallSummarizer("quiet", silence_s=2.0).summary(5.0)
    assert not summary.roles and summary.interruptions == 0
    assert summary.silences == 1 and seconds(summary.non_talk_time) == 5.0
    assert CallSummarizer("empty", 2.0).summary(0.0).silences == 0


def test_sentiment_examples_are_checked() -> None:
    with pytest.raises(ValueError, match="a mapping of positive, neutral, negative"):
        parse_sentiment_examples({"positive": ["great"], "negative": ["bad"]})
    with pytest.raises(ValueError, match=r"neutral\[2\] is not an utterance"):
        parse_sentiment_examples({"positive": ["a"], "neutral": ["b", ""], "negative": ["c"]})
