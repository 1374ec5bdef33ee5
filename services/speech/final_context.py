"""What a final is decoded from, and what of Whisper's answer is the utterance's.

Whisper decodes an utterance alone worse than inside its call ("is set to" came
out "is that too"; real 8 kHz Spanish calls scored 0.03 more WER than the bare
model on the whole call). So a final is decoded as Whisper's long-form decoding
would meet it: in a window of the channel's audio that ends with the utterance,
the finals already given for that window forced as Whisper's own text so far
(its prefix, timestamps and all), older finals its prompt. Back come the segments
in stream time, without the earlier finals' words and without the sentence
Whisper likes to add after the speech ("Thank you very much.").
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from percept.speech.agreement import word_key
from percept.speech.audio import SAMPLE_RATE, Samples
from percept.speech.backends import TRAILING_S, Said, Utterance, Word

# Whisper's 30 s window, less the tail after the speech and a margin: the earlier
# finals that started within this of the utterance's end are the decoder's prefix
WINDOW_S = 28.0
# A final with no earlier final in its window is heard from this long before its
# voice, as Whisper meets speech in a window (within its first second): the VAD
# heard some real voices 0.3-0.45 s after they began, past the pre-roll, and
# Whisper misheard the soft first word ("Por el momento" came out "el momento").
LEAD_S = 1.0
SHORT_UTTERANCE_S = 4.0  # alone in its window, one this short hears the last final spliced in
SPLICED_FINAL_S = 8.0  # a last final longer than this is not spliced in
# a final this long (in words) heard again word for word in the next is suspect
REPEATED_WORDS = 3
PROMPT_CHARS = 1000  # of the finals before the window: more than Whisper keeps (223 tokens)
# A segment that starts this close to the speech's end and is hollow (its words
# take no time) or unsure is a hallucination. On real 8 kHz calls every such
# segment had confidence 0.22-0.56 (tiny.en, base) and words of no duration; real
# segments had 0.61 and more, and words of 0.1 s and more.
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


def voiced(utterance: Utterance, voice: float, silence: float) -> Utterance:
    """The utterance over the VAD's voice, from `voice` to `silence` (within 0.1 s
    of a real prompt's edges), no word starting before the voice. Whisper starts
    the first word where its audio starts, the pre-roll (measured on real prompts:
    0.24-0.28 s early), and ends the last up to 0.2 s off; a call's talk time and a
    word's time should say when the speaker spoke."""
    words = tuple(
        replace(w, start=min(voice, w.end)) if w.start < voice else w for w in utterance.words
    )
    return replace(utterance, start=voice, end=silence, words=words)


def hallucinated(segment: Utterance, speech_end: float) -> bool:
    """A segment Whisper adds after the speech ("Thank you very much."), most of all
    with a prompt: it starts where the VAD heard the voice stop, and is unsure or
    hollow (its words take no time). Seen on every tiny.en final of a real call."""
    durations = [w.end - w.start for w in segment.words]
    hollow = bool(durations) and float(np.median(durations)) < HOLLOW_WORD_S
    unsure = segment.confidence < HALLUCINATION_CONFIDENCE
    return segment.start >= speech_end - TRAILING_S and (unsure or hollow)


def holds_words(utterances: list[Utterance], text: str) -> bool:
    """Whether the utterances' words hold `text`'s in a row, as `word_key` compares
    words (case and punctuation aside)."""
    heard = " ".join(word_key(w.text) for u in utterances for w in u.words)
    return f" {' '.join(word_key(w) for w in text.split())} " in f" {heard} "


@dataclass(frozen=True)
class FinalJob:
    clip: Samples  # from context_from to the utterance's end and tail
    prompt: str
    context_from: int  # stream samples
    start: int  # where the context ends: words ending before it are the context's
    speech_end: int
    voice: int = 0  # where the VAD heard this utterance's voice start
    said: tuple[Said, ...] = ()  # the finals in the context's audio, in clip seconds

    @property
    def speech_end_s(self) -> float:
        """Where the voice stopped, in seconds into the clip."""
        return _seconds(self.speech_end - self.context_from)

    @property
    def has_context(self) -> bool:
        return self.context_from < self.start

    @property
    def said_before(self) -> str:
        """The final just before the utterance: the last the context's audio holds."""
        return self.said[-1].text if self.said else ""

    def alone(self) -> FinalJob:
        """The same utterance without the audio and the finals before it."""
        clip = self.clip[self.start - self.context_from :]
        return replace(self, clip=clip, context_from=self.start, said=())

    def words_of_utterance(self, segments: list[Utterance]) -> list[Utterance] | None:
        """The segments in stream time, without the context's words and without a
        hallucinated tail; None when the split by time failed (Whisper squeezed
        the context's words and the utterance's into no time, so nothing is left,
        or heard none of the context's words): the utterance is to be decoded alone."""
        offset = _seconds(self.context_from)
        begin, end = _seconds(self.start) - offset, self.speech_end_s
        kept = []
        for segment in segments:
            if hallucinated(segment, end):
                continue
            words = tuple(
                Word(w.text, w.start + offset, w.end + offset, w.probability)
                for w in segment.words
                if w.end > begin or not self.has_context
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
        if self.has_context and not kept and any(s.words for s in segments):
            return None
        if not self._context_recognised(segments, begin):
            return None
        return self._without_repeated_context(kept)

    def repeated_final(self, kept: list[Utterance]) -> str | None:
        """The first of its prefix's finals the utterance holds word for word, if any.
        After a misheard final the decoder may read its prefix out again instead of
        the new audio (a real Spanish call: "Marque el asterisco para anular." for
        "Por favor ingrese la clave..."; each such final then joined the next one's
        prefix, and the call's WER went from 0.09 to 1.5). But callers and IVRs do
        say things again ("Por favor, intente de nuevo."): the utterance decoded
        alone tells the two apart (`holds_words`)."""
        for said in self.said:
            if len(said.text.split()) >= REPEATED_WORDS and holds_words(kept, said.text):
                return said.text
        return None

    def _context_recognised(self, segments: list[Utterance], begin: float) -> bool:
        """Whether the words Whisper put in the context's audio are the earlier
        final's (some of them). When none are, it skipped the context's words and
        stretched the utterance's first word over that audio ("Your" over the end of
        "Do not disturb", then dropped as context): the split by time is no good."""
        context = [w.text for s in segments for w in s.words if w.end <= begin]
        if not self.has_context or not context:
            return True
        earlier = {word_key(w) for w in self.said_before.split()}
        return any(word_key(w) in earlier for w in context)

    def _without_repeated_context(self, kept: list[Utterance]) -> list[Utterance]:
        """Drops leading words that end the previous final and start before this
        utterance's voice: the context's last word, timed a little late."""
        if not self.has_context or not kept or not kept[0].words:
            return kept
        tail = [word_key(w) for w in self.said_before.split()]
        first = kept[0]
        voice = _seconds(self.voice)
        drop = 0
        for n in range(min(len(tail), len(first.words) - 1), 0, -1):
            words = first.words[:n]
            if [word_key(w.text) for w in words] == tail[-n:] and words[-1].start < voice:
                drop = n
                break
        if not drop:
            return kept
        words = first.words[drop:]
        text = " ".join(w.text for w in words)
        return [replace(first, text=text, start=words[0].start, words=words), *kept[1:]]
