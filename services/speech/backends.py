"""Speech-to-text backends behind one small interface, so a faster engine can replace one."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from percept.speech.agreement import word_key
from percept.speech.audio import SAMPLE_RATE, Samples

# Whisper hears a sentence of its own in the last half second of an utterance's
# audio ("Thank you very much."): a segment starting there is suspect, and a window
# starting there holds nothing else (finals of real 8 kHz calls: all 67 such windows).
TRAILING_S = 0.5


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds from the start of the audio
    end: float
    probability: float


@dataclass(frozen=True)
class Utterance:
    text: str
    start: float
    end: float
    words: tuple[Word, ...]
    confidence: float


class Transcript(NamedTuple):
    utterances: list[Utterance]
    language: str  # spoken (detected, or the one asked for)
    language_probability: float = 1.0  # the detector's; 1 when the language was given


@dataclass(frozen=True)
class Said:
    """An earlier final over a stretch of the audio given (seconds into it). Whisper
    is told it wrote these words already (its prefix, timestamps and all), as its
    long-form decoding of the whole call would have: it goes on from there instead
    of hearing the next utterance alone."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class DraftRequest:
    audio: Samples
    language: str | None
    prefix: str  # text already agreed: the draft continues it


class Transcriber(Protocol):
    name: str
    english_only: bool

    def transcribe(
        self,
        audio: Samples,
        language: str | None,
        *,
        prompt: str = "",
        speech_end: float | None = None,
        said: Sequence[Said] = (),
    ) -> Transcript:
        """Utterances (with word times) and the language spoken; `prompt` is the text
        said before the audio (the channel's earlier finals), as Whisper's context;
        `speech_end`, where in `audio` a live utterance's voice stopped (a final);
        `said`, the finals already given for the audio's first stretches (from 0 s on);
        a backend that cannot be told them leaves their audio out."""
        ...

    def draft(self, requests: list[DraftRequest]) -> list[tuple[str, str]]:
        """Quick greedy (text, language) per request, one batch: for partial results."""
        ...


def loop_key(word: str) -> str:
    """A word as loop rounds compare it: a plural's "s" aside, since Whisper's rounds
    of one loop often differ only in it ("your patient. Thank you for your patients")."""
    key = word_key(word)
    return key[:-1] if len(key) > 3 and key.endswith("s") and not key.endswith("ss") else key


def drop_loops(text: str) -> str:
    """Cuts a hallucinated loop ("Can we meet? Can we meet? Can") after its first
    round: Whisper repeats itself when the audio ends mid-window. A loop is a run
    of three or more words said twice, or a shorter run said three times; "the
    phone, the phone case" is language. A loop's first round may stand a stray
    word or two before the others ("Please try again. Master... Please try again.
    Please try again."): the loop starts there."""
    words = text.split()
    # rounds are compared on words: a bare "…" or "-" between them is no word
    # ("You are no longer muted … You are no longer muted.")
    spoken = [j for j, w in enumerate(words) if loop_key(w)]
    keys = [loop_key(words[j]) for j in spoken]
    for i in range(len(keys)):
        for k in range(2, (len(keys) - i) // 2 + 1):
            rounds = 1
            while keys[i : i + k] == keys[i + rounds * k : i + (rounds + 1) * k]:
                rounds += 1
            if rounds >= 3 or (rounds == 2 and k >= 3):
                start = _first_round(keys, i, k)
                return " ".join(words[: spoken[start + k - 1] + 1])
    return text


STRAY_WORDS = 2  # at most this many words between a loop's first round and its next


def _first_round(keys: list[str], start: int, k: int) -> int:
    """Where a loop found at `start` (rounds of `k` words) began: earlier rounds
    count when no more than STRAY_WORDS words stand between them and the next."""
    while True:
        earlier = [
            s
            for gap in range(1, STRAY_WORDS + 1)
            if (s := start - gap - k) >= 0 and keys[s : s + k] == keys[start : start + k]
        ]
        if not earlier:
            return start
        start = earlier[0]


def cut_loops(segments: list[Utterance]) -> list[Utterance]:
    """A final's segments up to the end of the first round of a repetition loop
    (within a segment or across them), so no final repeats itself."""
    words = [w for s in segments for w in s.words]
    text = " ".join(w.text for w in words) if words else " ".join(s.text for s in segments)
    keep = len(drop_loops(text).split())
    if keep == len(text.split()):
        return segments
    if not words:  # no word times (a backend without them): cut the text only
        return [Utterance(drop_loops(text), segments[0].start, segments[-1].end, (), 0.0)]
    kept: list[Utterance] = []
    for segment in segments:
        room = keep - sum(len(s.words) for s in kept)
        if room <= 0:
            break
        if room >= len(segment.words):
            kept.append(segment)
            continue
        cut = segment.words[:room]
        text = " ".join(w.text for w in cut)
        kept.append(Utterance(text, segment.start, cut[-1].end, cut, segment.confidence))
    return kept


TIME_PRECISION = 0.02  # Whisper's timestamp tokens: <|0.00|> to <|30.00|>
PREFIX_TOKENS = 220  # faster-whisper keeps a prefix under half the decoder's 448


def timestamp(seconds: float) -> str:
    steps = round(min(30.0, max(0.0, seconds)) / TIME_PRECISION)
    return f"<|{steps * TIME_PRECISION:.2f}|>"


def whisper_prefix(said: Sequence[Said]) -> str:
    """The finals as Whisper writes a window's text, the first from 0 s on
    (faster-whisper writes that <|0.00|> itself): " a.<|2.10|><|2.60|> b.<|4.00|>"."""
    return "".join(
        ("" if n == 0 else timestamp(s.start)) + " " + s.text.strip() + timestamp(s.end)
        for n, s in enumerate(said)
    )


def _with_timestamp_tokens(tokenizer: Any) -> bool:
    """Whether the tokenizer reads "<|1.20|>" as Whisper's timestamp token, teaching
    it where it does not know them (tiny.en's tokenizer.json stops at
    <|notimestamps|>; the model's timestamps are the ids after it)."""
    first = tokenizer.token_to_id("<|notimestamps|>")
    if first is None:
        return False
    if tokenizer.token_to_id("<|0.00|>") is None and tokenizer.get_vocab_size(True) == first + 1:
        from tokenizers import AddedToken

        tokenizer.add_special_tokens(
            [AddedToken(timestamp(n * TIME_PRECISION), special=True) for n in range(1501)]
        )
    return bool(
        tokenizer.token_to_id("<|0.00|>") == first + 1
        and tokenizer.token_to_id("<|30.00|>") == first + 1501
    )


def without_said(audio: Samples, said: Sequence[Said]) -> tuple[Samples, Sequence[Said], float]:
    """The audio after the finals already given, for a backend that cannot be told
    them; where it starts, in the audio's seconds."""
    cut = said[-1].end if said else 0.0
    return audio[int(cut * SAMPLE_RATE) :], (), cut


class _TailWindow(Exception):
    """The next window would hold only the audio after the speech."""


class FasterWhisperTranscriber:
    """Whisper through CTranslate2 (faster-whisper): int8 on CPU, float16 on a GPU."""

    name = "faster-whisper"

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "auto",
        cpu_threads: int = 2,
    ) -> None:
        from faster_whisper import WhisperModel  # heavy: only the speech service pays for it

        if device == "auto":  # CTranslate2 would pick the GPU, but int8 is the CPU's choice
            import ctranslate2

            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        self.device = device
        compute_type = "int8" if device == "cpu" else "float16"
        self.model = WhisperModel(
            str(model_dir), device=device, compute_type=compute_type, cpu_threads=cpu_threads
        )
        self.english_only = not self.model.model.is_multilingual
        self.takes_said = _with_timestamp_tokens(self.model.hf_tokenizer)
        self._lock = threading.Lock()  # one decode at a time per model instance
        # faster-whisper encodes each 30 s window it decodes: the hook lets a final
        # stop before one that would hold only the audio after the speech
        self._before_window: Callable[[], None] | None = None
        encode = self.model.encode

        def encode_window(features: Any) -> Any:
            if self._before_window is not None:
                self._before_window()
            return encode(features)

        setattr(self.model, "encode", encode_window)  # noqa: B010 (an instance's method)

    def transcribe(
        self,
        audio: Samples,
        language: str | None,
        *,
        prompt: str = "",
        speech_end: float | None = None,
        said: Sequence[Said] = (),
    ) -> Transcript:
        if self.english_only:
            language = "en"
        if len(audio) < SAMPLE_RATE // 10:  # under 0.1 s: nothing to say
            return Transcript([], language or "")
        audio, said, offset = self._fitting(audio, said)
        prefix = whisper_prefix(said)
        if speech_end is not None:
            speech_end -= offset
        with self._lock:
            # Whisper's whole 30 s window, as it was trained: encoding only the audio
            # and a few seconds of padding was 2-3x faster but looped on real speech.
            # faster-whisper falls back to higher temperatures when a decode's
            # compression ratio says it repeats itself; cut_loops catches the rest.
            segments, info = self.model.transcribe(
                audio,
                language=language,
                initial_prompt=prompt or None,
                prefix=prefix or None,
                word_timestamps=True,
                # a live final is a span our VAD found, its lead and pre-roll kept
                # for Whisper to hear (its VAD cut a soft first word); and its VAD
                # would move the audio from under the prefix's timestamps
                vad_filter=speech_end is None and not prefix,
                # after a prefix the next segment may start anywhere in the window
                max_initial_timestamp=30.0 if prefix else 1.0,
                beam_size=5,
            )
            segments = self._decoded(segments, speech_end)
            utterances = [
                Utterance(
                    text=s.text.strip(),
                    start=float(s.start) + offset,
                    end=float(s.end) + offset,
                    words=tuple(
                        Word(
                            w.word.strip(),
                            float(w.start) + offset,
                            float(w.end) + offset,
                            float(w.probability),
                        )
                        for w in s.words or ()
                    ),
                    confidence=float(math.exp(s.avg_logprob)),
                )
                for s in segments
                if s.text.strip()
            ]
        return Transcript(
            cut_loops(utterances), str(info.language), float(info.language_probability)
        )

    def _fitting(
        self, audio: Samples, said: Sequence[Said]
    ) -> tuple[Samples, Sequence[Said], float]:
        """`said` within faster-whisper's prefix budget: the oldest finals go, with
        their audio, till it fits; the audio's new start in the old's seconds."""
        if said and not self.takes_said:
            return without_said(audio, said)
        offset = 0.0
        tokenizer = self.model.hf_tokenizer

        def tokens(said: Sequence[Said]) -> int:
            return len(tokenizer.encode(whisper_prefix(said), add_special_tokens=False).ids)

        while said and tokens(said) >= PREFIX_TOKENS:
            gone, said = said[0], said[1:]
            cut = said[0].start if said else gone.end
            audio = audio[int(cut * SAMPLE_RATE) :]
            said = [Said(s.start - cut, s.end - cut, s.text) for s in said]
            offset += cut
        return audio, said, offset

    def _decoded(self, segments: Iterable[Any], speech_end: float | None) -> list[Any]:
        """The segments of a (lazy) transcription, stopping before a window that
        would start within TRAILING_S of `speech_end`. With word times faster-whisper
        starts its next window at the last word's end, so nearly every final had a
        second window over its own last half second: an encoding (0.35 s of tiny.en's
        0.6 on 2 cores), and a hallucination that fell back through every
        temperature (3.6 s once) before the final dropped it."""
        found: list[Any] = []

        def before_window() -> None:
            ends = [w.end for s in found for w in s.words or ()]
            if speech_end is not None and ends and ends[-1] > speech_end - TRAILING_S:
                raise _TailWindow

        self._before_window = before_window
        try:
            for segment in segments:
                found.append(segment)
        except _TailWindow:
            pass
        finally:
            self._before_window = None
        return found

    def draft(self, requests: list[DraftRequest]) -> list[tuple[str, str]]:
        """Encodes only the audio given plus a second of silence, not Whisper's
        30 s window: a 3 s draft costs about 0.13 s instead of 0.46 s on 2 cores,
        with the same words in our measurements (bench/speech_bench.py)."""
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer

        if not requests:
            return []
        hop = self.model.feature_extractor.hop_length
        longest = max(len(r.audio) for r in requests) + SAMPLE_RATE  # a second of silence
        longest = min(longest, 30 * SAMPLE_RATE)
        features = []
        for r in requests:
            padded = np.zeros(longest, np.float32)
            clip = r.audio[-(longest - SAMPLE_RATE) :] if len(r.audio) else r.audio
            padded[: len(clip)] = clip
            mel = self.model.feature_extractor(padded)
            frames = min(mel.shape[1], longest // hop) // 2 * 2
            features.append(mel[:, :frames])
        frames = min(f.shape[1] for f in features)
        batch = np.ascontiguousarray(np.stack([f[:, :frames] for f in features]))
        with self._lock:
            encoded = self.model.model.encode(
                ctranslate2.StorageView.from_array(batch), to_cpu=False
            )
            languages = ["en" if self.english_only else r.language or "" for r in requests]
            if not all(languages):
                detected = self.model.model.detect_language(encoded)
                languages = [
                    lang or str(found[0][0])[2:-2]
                    for lang, found in zip(languages, detected, strict=True)
                ]
            prompts = []
            for r, lang in zip(requests, languages, strict=True):
                tokenizer = Tokenizer(
                    self.model.hf_tokenizer,
                    not self.english_only,
                    task="transcribe",
                    language=lang,
                )
                prefix = tokenizer.encode(" " + r.prefix.strip()) if r.prefix.strip() else []
                prompts.append([*tokenizer.sot_sequence, tokenizer.no_timestamps, *prefix])
            seconds = longest / SAMPLE_RATE
            results = self.model.model.generate(
                encoded,
                prompts,
                beam_size=1,
                max_length=min(448, max(len(p) for p in prompts) + int(seconds * 8) + 8),
                suppress_blank=False,
                repetition_penalty=1.2,  # short clips otherwise tend to loop
            )
        eot = self.model.hf_tokenizer.token_to_id("<|endoftext|>")
        texts = []
        for result in results:
            ids = [t for t in result.sequences_ids[0] if t < eot]
            # CTranslate2 returns the prefix tokens with the continuation.
            texts.append(drop_loops(self.model.hf_tokenizer.decode(ids).strip()))
        return list(zip(texts, languages, strict=True))
