"""What happened on a call, from its finals: talk time, silences, interruptions,
talk speed and sentiment per role.

A final's speech runs over its start and end offsets: where the channel's VAD
heard the voice begin and end (within 0.1 s of the edges of real prompts placed
at known times, where Whisper's word times were up to 0.28 s off). Silences are
the stretches of the call where no channel speaks, the start and the end of the
call included; only those of at least the threshold count as non-talk time (a
breath between turns is not). An interruption is a channel beginning to speak
while another channel is speaking.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from google.protobuf.duration_pb2 import Duration

from percept.understanding.call_categories import barges_in
from percept.v1 import common_pb2, speech_pb2

FINAL = speech_pb2.RecognitionEvent.EVENT_TYPE_FINAL
CATEGORY = speech_pb2.RecognitionEvent.EVENT_TYPE_CATEGORY
POSITIVE, NEUTRAL, NEGATIVE = (
    common_pb2.SENTIMENT_POSITIVE,
    common_pb2.SENTIMENT_NEUTRAL,
    common_pb2.SENTIMENT_NEGATIVE,
)
# a mean score past these is a positive or negative call side (a single final's
# label is the classifier's own)
LEANING = 0.25


def _seconds(d: Duration) -> float:
    return d.ToNanoseconds() / 1e9


def _duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(max(0.0, seconds) * 1e9))
    return d


@dataclass(frozen=True)
class Turn:
    channel: int
    role: int
    start: float
    end: float
    words: int
    sentiment: int
    score: float


def turn_of(event: speech_pb2.RecognitionEvent) -> Turn:
    start, end = _seconds(event.start_offset), _seconds(event.end_offset)
    count = len([w for w in event.words if w.word.strip()]) or len(event.transcript.split())
    return Turn(
        event.channel, event.role, start, max(start, end), count, event.sentiment,
        event.sentiment_score,
    )  # fmt: skip


@dataclass
class CallSummarizer:
    call_id: str
    silence_s: float
    turns: list[Turn] = field(default_factory=list)
    categories: list[speech_pb2.CategoryMatch] = field(default_factory=list)

    def add(self, event: speech_pb2.RecognitionEvent) -> None:
        if event.type == FINAL and event.transcript.strip():
            self.turns.append(turn_of(event))
        elif event.type == CATEGORY:
            self.categories.append(event.category)

    def summary(self, duration_s: float) -> speech_pb2.CallSummary:
        """The call so far; a call with no speech gets zeros, not an error."""
        turns = sorted(self.turns, key=lambda t: t.start)
        duration_s = max([duration_s, *(t.end for t in turns)])
        silences = _silences(turns, duration_s, self.silence_s)
        barged = _interruptions(turns)
        by_role: dict[int, list[Turn]] = defaultdict(list)
        for t in turns:
            by_role[t.role].append(t)
        return speech_pb2.CallSummary(
            call_id=self.call_id,
            duration=_duration(duration_s),
            roles=[_role(role, by_role[role], barged) for role in sorted(by_role)],
            non_talk_time=_duration(sum(silences)),
            silences=len(silences),
            longest_silence=_duration(max(silences, default=0.0)),
            silence_threshold=_duration(self.silence_s),
            interruptions=sum(barged.values()),
            categories=self.categories,
        )


def _silences(turns: list[Turn], duration_s: float, threshold: float) -> list[float]:
    gaps = []
    reached = 0.0  # the end of speech so far, over every channel
    for t in turns:
        if t.start - reached >= threshold:
            gaps.append(t.start - reached)
        reached = max(reached, t.end)
    if duration_s - reached >= threshold:
        gaps.append(duration_s - reached)
    return gaps


def _interruptions(turns: list[Turn]) -> dict[int, int]:
    """Per role, the turns begun while another channel's turn went on."""
    barged: dict[int, int] = defaultdict(int)
    for t in turns:
        if barges_in(t, turns):
            barged[t.role] += 1
    return barged


def _role(role: int, turns: list[Turn], barged: dict[int, int]) -> speech_pb2.RoleSummary:
    talk = sum(t.end - t.start for t in turns)
    words = sum(t.words for t in turns)
    scored = [t.score for t in turns if t.sentiment]
    mean = sum(scored) / len(scored) if scored else 0.0
    third = max(1, len(scored) // 3)
    trend = sum(scored[-third:]) / third - sum(scored[:third]) / third if len(scored) >= 2 else 0.0
    label = (
        0
        if not scored
        else POSITIVE
        if mean >= LEANING
        else NEGATIVE
        if mean <= -LEANING
        else NEUTRAL
    )
    return speech_pb2.RoleSummary(
        role=role,  # type: ignore[arg-type]
        talk_time=_duration(talk),
        utterances=len(turns),
        words=words,
        words_per_minute=round(words / (talk / 60), 1) if talk > 0 else 0.0,
        interruptions=barged.get(role, 0),
        sentiment=label,  # type: ignore[arg-type]
        sentiment_score=round(mean, 3),
        sentiment_trend=round(trend, 3),
        positive_utterances=sum(t.sentiment == POSITIVE for t in turns),
        neutral_utterances=sum(t.sentiment == NEUTRAL for t in turns),
        negative_utterances=sum(t.sentiment == NEGATIVE for t in turns),
    )
