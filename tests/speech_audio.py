"""Real speech for the speech tests: espeak-ng renders it, as the set-up script installs it."""

from __future__ import annotations

import io
import re
import shutil
import struct
import subprocess
import wave
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest

from percept.speech.audio import decode_file, pcm16

# espeak-ng's voice is robotic and tiny.en is the smallest Whisper: a word or two
# of ten may come out wrong, more than that means the pipeline is broken.
MAX_WER = 0.2


def speak(text: str, path: Path) -> bytes:
    espeak = shutil.which("espeak-ng") or pytest.fail("espeak-ng missing: run scripts/setup.sh")
    subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    return path.read_bytes()


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def wer(reference: str, hypothesis: str) -> float:
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)


def pcm16k(wav: bytes) -> npt.NDArray[np.int16]:
    """A WAV file's samples as 16 kHz mono int16 (what a phone system would send)."""
    return pcm16(floats16k(wav))


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return out.getvalue()


def pcm8k(wav: bytes) -> npt.NDArray[np.int16]:
    """A WAV file's samples as 8 kHz int16, what a telephone line carries (pairs of 16 kHz
    samples averaged: band-limited enough for speech)."""
    samples = floats16k(wav)
    pcm = samples[: len(samples) // 2 * 2].reshape(-1, 2).mean(axis=1)
    out: npt.NDArray[np.int16] = np.clip(pcm * 32767, -32768, 32767).astype(np.int16)
    return out


def mulaw8k(wav: bytes) -> bytes:
    """A WAV file as 8 kHz G.711 mu-law, as Twilio and Genesys send a caller."""
    from percept.speech import g711

    return g711.compress(pcm8k(wav), "mulaw")


def floats16k(wav: bytes) -> npt.NDArray[np.float32]:
    """The samples as the models take them: 16 kHz mono float32 in [-1, 1]."""
    return decode_file(io.BytesIO(wav), "WAV")


def wav_file(
    data: bytes, *, tag: int = 1, channels: int = 1, rate: int = 8000, bits: int = 8
) -> bytes:
    """A RIFF/WAVE file of any format code (6 A-law, 7 mu-law, 0x31 GSM...) around
    `data`: Python's wave module writes PCM only."""
    align = max(1, channels * bits // 8)
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def float_wav(samples: npt.NDArray[np.floating[Any]], rate: int = 8000) -> bytes:
    """An IEEE-float WAV (format 3) of mono `samples`, as they are: NaN included."""
    return wav_file(samples.astype("<f4").tobytes(), tag=3, bits=32, rate=rate)


def encoded(container: str, codec: str, samples: npt.NDArray[np.float32], rate: int) -> bytes:
    """Mono `samples` (float, full scale 1) encoded by FFmpeg: FLAC, MP2, Opus in Ogg..."""
    out = io.BytesIO()
    with av.open(out, "w", format=container) as muxer:
        stream = muxer.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        wanted = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        pcm = pcm16(samples)
        for start in range(0, len(pcm), rate):  # a second a frame: encoders take no more
            frame = av.AudioFrame.from_ndarray(
                pcm[start : start + rate].reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate = rate
            for part in wanted.resample(frame):
                muxer.mux(stream.encode(part))
        for part in wanted.resample(None):
            muxer.mux(stream.encode(part))
        muxer.mux(stream.encode(None))
    return out.getvalue()
