"""Audio in, 16 kHz mono float32 out: every backend gets the same samples.

LINEAR16 is raw little-endian PCM described by the request; containers (WAV,
FLAC, Ogg-Opus) describe themselves and are decoded with FFmpeg (PyAV).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import numpy.typing as npt

from percept.v1 import speech_pb2

SAMPLE_RATE = 16_000
MIN_RATE, MAX_RATE = 8_000, 192_000
MAX_CHANNELS = 8
CONTAINERS = {
    speech_pb2.AUDIO_ENCODING_WAV: "WAV",
    speech_pb2.AUDIO_ENCODING_FLAC: "FLAC",
    speech_pb2.AUDIO_ENCODING_OGG_OPUS: "Ogg-Opus",
}

Samples = npt.NDArray[np.float32]


class AudioError(ValueError):
    """The audio cannot be used; the message names the field and the reason."""


def check_config(config: speech_pb2.RecognitionConfig) -> None:
    encoding = config.encoding
    if encoding == speech_pb2.AUDIO_ENCODING_UNSPECIFIED:
        raise AudioError("config.encoding: required (LINEAR16, WAV, FLAC or OGG_OPUS)")
    if encoding not in speech_pb2.AudioEncoding.values():
        raise AudioError(f"config.encoding: unknown value {encoding}")
    if encoding == speech_pb2.AUDIO_ENCODING_LINEAR16 and not (
        MIN_RATE <= config.sample_rate_hz <= MAX_RATE
    ):
        raise AudioError(
            f"config.sample_rate_hz: {config.sample_rate_hz} is not between {MIN_RATE} and "
            f"{MAX_RATE} (required for LINEAR16)"
        )
    if not 0 <= config.audio_channel_count <= MAX_CHANNELS:
        count = config.audio_channel_count
        raise AudioError(f"config.audio_channel_count: {count} is not between 1 and {MAX_CHANNELS}")


def mono_resampler() -> av.AudioResampler:
    """To 16 kHz mono float32. Stateful: one per stream, so chunk edges leave no clicks."""
    return av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)


def to_samples(frames: list[av.AudioFrame]) -> Samples:
    chunks = [f.to_ndarray().reshape(-1) for f in frames]
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def pcm_frame(data: bytes, rate: int, channels: int) -> av.AudioFrame:
    """Whole 16-bit little-endian frames as one mono frame (channels averaged)."""
    pcm = np.frombuffer(data, dtype="<i2").reshape(-1, channels)
    mono = pcm.astype(np.int32).mean(axis=1).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    return frame


def pcm16(samples: Samples) -> npt.NDArray[np.int16]:
    """Float samples back to 16-bit PCM (what a phone system sends)."""
    return np.clip(np.round(samples * 32768), -32768, 32767).astype(np.int16)


def decode_file(source: str | Path | BinaryIO, name: str) -> Samples:
    """A whole recording in any format FFmpeg reads, as 16 kHz mono float32."""
    resampler = mono_resampler()
    try:
        with av.open(source, mode="r") as container:
            if not container.streams.audio:
                raise AudioError(f"audio_content: the {name} data holds no audio stream")
            frames = [f for frame in container.decode(audio=0) for f in resampler.resample(frame)]
    except av.error.FFmpegError as exc:
        raise AudioError(f"audio_content: not a readable {name} stream ({exc})") from exc
    return to_samples([*frames, *resampler.resample(None)])


def decode(config: speech_pb2.RecognitionConfig, data: bytes) -> Samples:
    """The audio as 16 kHz mono float32 in [-1, 1]."""
    check_config(config)
    if config.encoding == speech_pb2.AUDIO_ENCODING_LINEAR16:
        return decode_linear16(data, config.sample_rate_hz, config.audio_channel_count or 1)
    if not data:
        return np.zeros(0, np.float32)
    return decode_file(io.BytesIO(data), CONTAINERS[config.encoding])


def decode_linear16(data: bytes, rate: int, channels: int) -> Samples:
    width = 2 * channels
    if len(data) % width:
        raise AudioError(
            f"audio_content: {len(data)} bytes is not a whole number of 16-bit samples "
            f"for {channels} channel(s)"
        )
    if not data:
        return np.zeros(0, np.float32)
    resampler = mono_resampler()
    return to_samples(
        [*resampler.resample(pcm_frame(data, rate, channels)), *resampler.resample(None)]
    )
