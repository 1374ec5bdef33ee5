"""Speech-to-text backends behind one small interface, so a faster engine can replace one."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from percept.speech.audio import SAMPLE_RATE, Samples


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


class Transcriber(Protocol):
    name: str

    def transcribe(self, audio: Samples, language: str | None) -> tuple[list[Utterance], str]:
        """Utterances (with word times) and the language spoken."""
        ...


class FasterWhisperTranscriber:
    """Whisper through CTranslate2 (faster-whisper): int8 on CPU, float16 on a GPU."""

    name = "faster-whisper"

    def __init__(self, model_dir: Path, *, device: str = "auto", cpu_threads: int = 2) -> None:
        from faster_whisper import WhisperModel  # heavy: only the speech service pays for it

        compute_type = "int8" if device in ("cpu", "auto") else "float16"
        self.model = WhisperModel(
            str(model_dir), device=device, compute_type=compute_type, cpu_threads=cpu_threads
        )
        self.english_only = not self.model.model.is_multilingual
        self._lock = threading.Lock()  # one decode at a time per model instance

    def transcribe(self, audio: Samples, language: str | None) -> tuple[list[Utterance], str]:
        if self.english_only:
            language = "en"
        if len(audio) < SAMPLE_RATE // 10:  # under 0.1 s: nothing to say
            return [], language or ""
        with self._lock:
            segments, info = self.model.transcribe(
                audio, language=language, word_timestamps=True, vad_filter=True, beam_size=5
            )
            utterances = [
                Utterance(
                    text=s.text.strip(),
                    start=float(s.start),
                    end=float(s.end),
                    words=tuple(
                        Word(w.word.strip(), float(w.start), float(w.end), float(w.probability))
                        for w in s.words or ()
                    ),
                    confidence=float(math.exp(s.avg_logprob)),
                )
                for s in segments
                if s.text.strip()
            ]
        return utterances, str(info.language)
