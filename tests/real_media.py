"""Real recordings for the speech tests, from Debian packages the set-up script installs.

- `pocketsphinx-testdata`: LibriVox clips read by a person, 16 kHz, with transcripts.
- `asterisk-core-sounds-{en,es,fr}-wav` with their text packages: real 8 kHz telephone
  prompts (an IVR's voice), transcripts in `core-sounds-*.txt.gz`.

A test call is a chosen set of prompts joined with pauses of 0.5-1.5 s, the way a
caller's turns arrive: the audio stays in the packages, nothing is committed. Choices
are seeded, so a call is the same in every run, and made from every prompt that fits
(not hand-picked ones). WER uses Whisper's own text normalisers (openai-whisper is
installed for its reference backend), so "press 1" and "press one" are the same words.
"""

from __future__ import annotations

import gzip
import random
import re
import wave
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from percept.runtime.settings import Settings
from percept.v1 import speech_pb2 as sp
from percept.v1 import speech_pb2_grpc

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
ASTERISK = Path("/usr/share/asterisk/sounds")
VOICES = {"en": "en_US_f_Allison", "es": "es_MX_f_Allison", "fr": "fr_CA_f_June"}
TEXTS = "/usr/share/doc/asterisk-core-sounds-{lang}/core-sounds-{lang}.txt.gz"
PACKAGES = "pocketsphinx-testdata and asterisk-core-sounds-{en,es,fr}(-wav)"

Pcm = npt.NDArray[np.int16]


@dataclass(frozen=True)
class Clip:
    name: str
    text: str
    pcm: Pcm  # mono int16
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.pcm) / self.rate


@dataclass(frozen=True)
class Call:
    """Prompts joined with pauses: the audio and what is said in it, in order."""

    clips: tuple[Clip, ...]
    pcm: Pcm
    rate: int
    language: str

    @property
    def text(self) -> str:
        return " ".join(c.text for c in self.clips)

    @property
    def seconds(self) -> float:
        return len(self.pcm) / self.rate


def _missing(what: Path | str) -> None:
    pytest.fail(f"{what} missing: run scripts/setup.sh (it installs {PACKAGES})")


def read_wav(path: Path) -> tuple[Pcm, int]:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: not 16-bit mono")
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").copy(), w.getframerate()


def librivox() -> list[Clip]:
    """The five LibriVox clips (16 kHz) with their transcripts."""
    transcription = LIBRIVOX / "transcription"
    if not transcription.is_file():
        _missing(transcription)
    clips = []
    for line in transcription.read_text().splitlines():
        match = re.fullmatch(r"<s> (.*) </s> \((\S+)\)", line.strip())
        if match:
            pcm, rate = read_wav(LIBRIVOX / f"{match.group(2)}.wav")
            clips.append(Clip(match.group(2), match.group(1), pcm, rate))
    return clips


@cache
def prompt_texts(language: str) -> dict[str, str]:
    path = Path(TEXTS.format(lang=language))
    if not path.is_file():
        _missing(path)
    texts = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as lines:
        for line in lines:
            name, sep, text = line.partition(":")
            if sep and not line.startswith(";") and "/" not in name:
                texts[name.strip()] = text.strip()
    return texts


def _speakable(text: str) -> bool:
    """A prompt that is plain words: no sound effects, no digits or ellipses to guess."""
    return bool(text) and not re.search(r"[\[\]()\d…<>]|\.\.\.", text) and len(text.split()) >= 3


def prompts(language: str, *, min_words: int = 3, max_s: float = 12.0) -> list[Clip]:
    """Every speakable prompt of a language with its recording, sorted by name."""
    folder = ASTERISK / VOICES[language]
    if not folder.is_dir():
        _missing(folder)
    clips = []
    for name, text in sorted(prompt_texts(language).items()):
        path = folder / f"{name}.wav"
        if not path.is_file() or not _speakable(text) or len(text.split()) < min_words:
            continue
        pcm, rate = read_wav(path)
        if len(pcm) / rate <= max_s:
            clips.append(Clip(name, text, pcm, rate))
    return clips


def _quiet_line(samples: int, rng: np.random.Generator) -> Pcm:
    """A quiet line (about -66 dBFS) rather than digital zeros, as a real call's pauses."""
    return np.clip(rng.normal(0.0, 16.0, samples), -32768, 32767).astype(np.int16)


def _line_noise(seconds: float, rate: int, rng: np.random.Generator) -> Pcm:
    return _quiet_line(int(seconds * rate), rng)


def join(clips: list[Clip], language: str, *, seed: int = 0, lead_s: float = 0.5) -> Call:
    """Clips with seeded pauses of 0.5-1.5 s between them (and half a second before)."""
    rate = clips[0].rate
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    parts: list[Pcm] = [_line_noise(lead_s, rate, noise)]
    for clip in clips:
        if clip.rate != rate:
            raise ValueError("clips of one call share a rate")
        parts += [clip.pcm, _line_noise(rng.uniform(0.5, 1.5), rate, noise)]
    return Call(tuple(clips), np.concatenate(parts), rate, language)


def telephone_call(language: str, count: int, *, seed: int = 0) -> Call:
    """`count` prompts drawn (seeded) from all that fit, as one 8 kHz call."""
    pool = prompts(language)
    return join(random.Random(seed).sample(pool, min(count, len(pool))), language, seed=seed)


def later(call: Call, seconds: float, *, seed: int = 0) -> Call:
    """The same call started `seconds` later (a quiet line before it): the bare
    model's windows fall elsewhere, its WER moves, the words do not."""
    quiet = _line_noise(seconds, call.rate, np.random.default_rng(seed))
    return replace(call, pcm=np.concatenate([quiet, call.pcm]))


def stereo_call(language: str, turns: int, *, seed: int = 0) -> tuple[Call, Call]:
    """An agent (channel 0) and a customer (channel 1) taking `turns` turns each,
    pauses of 0.5-1.5 s between turns: while one speaks, the other's line is quiet.
    The two channels, each a Call of the same length."""
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    clips = rng.sample(prompts(language), 2 * turns)
    rate = clips[0].rate
    sides: list[list[Pcm]] = [[], []]
    for i, clip in enumerate(clips):
        pause = _quiet_line(int(rng.uniform(0.5, 1.5) * rate), noise)
        sides[i % 2] += [clip.pcm, pause]
        sides[1 - i % 2] += [_quiet_line(len(clip.pcm), noise), _quiet_line(len(pause), noise)]
    agent, customer = (
        Call(
            tuple(clips[side::2]),
            np.concatenate([_quiet_line(rate // 2, noise), *sides[side]]),
            rate,
            language,
        )
        for side in (0, 1)
    )
    return agent, customer


def interleaved(*channels: Call) -> Pcm:
    """Channels' samples as one multi-channel stream (frame by frame)."""
    return np.stack([c.pcm for c in channels], axis=1).reshape(-1)


def normalise(text: str, language: str) -> str:
    from whisper.normalizers import BasicTextNormalizer, EnglishTextNormalizer

    # the Spanish and French prompt texts are written without accents
    normaliser = EnglishTextNormalizer() if language == "en" else BasicTextNormalizer(True)
    return str(normaliser(text))


def wer(reference: str, hypothesis: str, language: str) -> float:
    """Word error rate after Whisper's normalisation."""
    import jiwer

    ref = normalise(reference, language)
    return float(jiwer.wer(ref or "-", normalise(hypothesis, language) or ""))


async def streamed_finals(
    stub: speech_pb2_grpc.SpeechAsyncStub, config: sp.RecognitionConfig, data: bytes
) -> list[sp.RecognitionEvent]:
    """The finals of `data` streamed in 100 ms chunks, as fast as the service takes
    them: finals depend on the audio and where the VAD cuts it, not on the pace."""
    width = 2 if config.encoding == sp.AUDIO_ENCODING_LINEAR16 else 1
    step = config.sample_rate_hz // 10 * width
    messages = [sp.StreamingRecognizeRequest(config=config)] + [
        sp.StreamingRecognizeRequest(audio_content=data[i : i + step])
        for i in range(0, len(data), step)
    ]
    final = sp.RecognitionEvent.EVENT_TYPE_FINAL
    return [e async for e in stub.StreamingRecognize(iter(messages)) if e.type == final]


@cache
def _bare_model(path: Path) -> Any:
    from percept.speech.backends import FasterWhisperTranscriber

    return FasterWhisperTranscriber(path, device="cpu").model


def bare_transcript(settings: Settings, audio: npt.NDArray[np.float32], language: str) -> str:
    """The model alone on the whole recording: faster-whisper's stock transcribe."""
    from percept.models import model_store

    path = model_store(settings).resolve(settings.speech_model).path  # the service's weights
    segments, _ = _bare_model(path).transcribe(audio, language=language)
    return " ".join(s.text.strip() for s in segments)
