"""Garbage into the live audio decoders: an AudioError or samples, never a crash or a hang.

Seeded, so a failure replays: random bytes, real files cut short, and real
files with bytes flipped, in chunks of random size, for every encoding.
"""

from __future__ import annotations

import io
import random
import threading
import time

import av
import numpy as np
import pytest

from percept.speech.audio import AudioError
from percept.speech.stream_audio import stream_decoder
from percept.v1 import speech_pb2 as sp

RATE = 16000
CASES = 400


def tone(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)


def encoded(fmt: str, codec: str, rate: int) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        assert isinstance(stream, av.AudioStream)
        frame = av.AudioFrame.from_ndarray(tone().reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        for f in [*resampler.resample(frame), *resampler.resample(None)]:
            container.mux(stream.encode(f))
        container.mux(stream.encode(None))
    return out.getvalue()


SAMPLES = {
    sp.AUDIO_ENCODING_WAV: lambda: encoded("wav", "pcm_s16le", RATE),
    sp.AUDIO_ENCODING_FLAC: lambda: encoded("flac", "flac", RATE),
    sp.AUDIO_ENCODING_OGG_OPUS: lambda: encoded("ogg", "libopus", 48000),
    sp.AUDIO_ENCODING_LINEAR16: lambda: tone().tobytes(),
}


def mutations(rng: random.Random, valid: bytes) -> list[bytes]:
    flipped = bytearray(valid)
    for _ in range(rng.randint(1, 50)):
        flipped[rng.randrange(len(flipped))] = rng.randrange(256)
    return [
        rng.randbytes(rng.randint(0, 20_000)),
        valid[: rng.randint(0, len(valid))],
        bytes(flipped),
        valid[rng.randint(0, len(valid) // 2) :],  # starts mid-stream
    ]


@pytest.mark.parametrize("encoding", list(SAMPLES), ids=lambda e: sp.AudioEncoding.Name(e))
def test_garbage_gives_audio_errors_or_samples_and_frees_its_thread(
    encoding: sp.AudioEncoding.ValueType,
) -> None:
    rng = random.Random(encoding)
    valid = SAMPLES[encoding]()
    config = sp.RecognitionConfig(encoding=encoding, sample_rate_hz=RATE)
    threads = threading.active_count()
    outcomes = {"samples": 0, "error": 0}
    for _ in range(CASES // 4):
        for data in mutations(rng, valid):
            if encoding == sp.AUDIO_ENCODING_LINEAR16 and len(data) % 2:
                data = data[:-1]  # whole frames are the API's promise, tested elsewhere
            decoder = stream_decoder(config)
            began = time.monotonic()
            try:
                position = 0
                while position < len(data):
                    size = rng.choice((1, 7, 160, 1000, 4096)) * (
                        2 if encoding == sp.AUDIO_ENCODING_LINEAR16 else 1
                    )
                    decoder.feed(data[position : position + size])
                    position += size
                samples = decoder.finish()
                assert samples.dtype == np.float32 and np.isfinite(samples).all()
                outcomes["samples"] += 1
            except AudioError as exc:
                assert str(exc).startswith("audio_content: ")
                outcomes["error"] += 1
            finally:
                decoder.close()
            assert time.monotonic() - began < 15, "a decoder hung"
    for _ in range(50):  # decoder threads end once their input has
        if threading.active_count() <= threads:
            break
        time.sleep(0.1)
    assert threading.active_count() <= threads
    assert outcomes["samples"] > 0  # the truncated files still give what they hold
