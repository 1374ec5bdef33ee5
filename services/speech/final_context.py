"""What a final is decoded from, and what of Whisper's answer is the utterance's.

Whisper decodes an utterance alone worse than inside its call: a short one
("is set to" came out "is that too") gets the audio just before it as well, and
the channel's earlier finals are the decoder's prompt. Back come the segments in
stream time, without the context's words and without the sentence Whisper likes
to add after the speech ("Thank you very much.").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from percept.speech.audio import SAMPLE_RATE, Samples
from percept.speech.backends import Utterance, Word

SHORT_UTTERANCE_S = 4.0  # a final shorter than this is decoded with the audio before it
CONTEXT_S = 4.0
PROMPT_FINALS = 3  # the channel's last finals, Whisper's prompt
# A trailing segment that starts this close to the speech's end and is unsure or
# hollow is a hallucination: on a real 8 kHz call every such segment of tiny.en
# had confidence 0.3-0.56 and words of no duration; real ones 0.69 and more.
TRAILING_S = 0.25
HOLLOW_WORD_S = 0.05
HALLUCINATION_CONFIDENCE = 0.6


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


def hallucinated(segment: Utterance, speech_end: float) -> bool:
    """A segment Whisper adds after the speech ("Thank you very much."), most of all
    with a prompt: it starts where the VAD heard the voice stop, and is unsure or
    hollow (its words take no time). Seen on every tiny.en final of a real call."""
    durations = [w.end - w.start for w in segment.words]
    hollow = bool(durations) and float(np.median(durations)) < HOLLOW_WORD_S
    unsure = segment.confidence < HALLUCINATION_CONFIDENCE
    return segment.start >= speech_end - TRAILING_S and (unsure or hollow)


@dataclass(frozen=True)
class FinalJob:
    clip: Samples  # from context_from to the utterance's end and tail
    prompt: str
    context_from: int  # stream samples
    start: int
    speech_end: int

    def words_of_utterance(self, segments: list[Utterance]) -> list[Utterance]:
        """The segments in stream time, without the context's words (they end
        before the utterance starts) and without a hallucinated tail."""
        offset = _seconds(self.context_from)
        begin, end = _seconds(self.start) - offset, _seconds(self.speech_end) - offset
        kept = []
        for segment in segments:
            if hallucinated(segment, end):
                continue
            words = tuple(
                Word(w.text, w.start + offset, w.end + offset, w.probability)
                for w in segment.words
                if w.end > begin or self.context_from == self.start
            )
            if not words and segment.words:
                continue
            cut = len(words) < len(segment.words)
            kept.append(
                Utterance(
                    text=" ".join(w.text for w in words) if cut else segment.text,
                    start=words[0].start if words else segment.start + offset,
                    end=segment.end + offset,
                    words=words,
                    confidence=segment.confidence,
                )
            )
        return kept
