"""Audio in, 16 kHz float32 out (mono, or one row per channel): every backend
gets the same samples.

LINEAR16, MULAW and ALAW are headerless, described by the request; containers
(WAV, FLAC, Ogg-Opus) describe themselves and are decoded with FFmpeg (PyAV).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import numpy.typing as npt

from percept.speech import g711
from percept.v1 import speech_pb2

SAMPLE_RATE = 16_000
MIN_RATE, MAX_RATE = 8_000, 192_000
MAX_CHANNELS = 8
CONTAINERS = {
    speech_pb2.AUDIO_ENCODING_WAV: "WAV",
    speech_pb2.AUDIO_ENCODING_FLAC: "FLAC",
    speech_pb2.AUDIO_ENCODING_OGG_OPUS: "Ogg-Opus",
}

# Headerless encodings: the G.711 law of each (None: 16-bit little-endian PCM).
RAW: dict[int, str | None] = {
    speech_pb2.AUDIO_ENCODING_LINEAR16: None,
    speech_pb2.AUDIO_ENCODING_MULAW: "mulaw",
    speech_pb2.AUDIO_ENCODING_ALAW: "alaw",
}
ENCODING_NAMES = {
    speech_pb2.AUDIO_ENCODING_LINEAR16: "LINEAR16",
    speech_pb2.AUDIO_ENCODING_MULAW: "MULAW",
    speech_pb2.AUDIO_ENCODING_ALAW: "ALAW",
    **CONTAINERS,
}
CUSTOMER = speech_pb2.CHANNEL_ROLE_CUSTOMER

Samples = npt.NDArray[np.float32]


class AudioError(ValueError):
    """The audio cannot be used; the message names the field and the reason."""


class AudioTooLong(AudioError):
    """More audio than one request may carry (compressed audio can expand a lot)."""


def check_config(config: speech_pb2.RecognitionConfig) -> None:
    encoding = config.encoding
    if encoding == speech_pb2.AUDIO_ENCODING_UNSPECIFIED:
        names = ", ".join(ENCODING_NAMES.values())
        raise AudioError(f"config.encoding: required ({names})")
    if encoding not in speech_pb2.AudioEncoding.values():
        raise AudioError(f"config.encoding: unknown value {encoding}")
    if encoding in RAW and not MIN_RATE <= config.sample_rate_hz <= MAX_RATE:
        raise AudioError(
            f"config.sample_rate_hz: {config.sample_rate_hz} is not between {MIN_RATE} and "
            f"{MAX_RATE} (required for {ENCODING_NAMES[encoding]})"
        )
    if not 0 <= config.audio_channel_count <= MAX_CHANNELS:
        count = config.audio_channel_count
        raise AudioError(f"config.audio_channel_count: {count} is not between 1 and {MAX_CHANNELS}")
    check_roles(config)
    if encoding in RAW:
        check_channels(config, config.audio_channel_count or 1)


def check_roles(config: speech_pb2.RecognitionConfig) -> None:
    """Roles are known values, and one channel at most is the customer's: lead
    signals follow the customer, so two would be one call's two leads. AGENT may
    repeat (an agent and an IVR, or a whisper coach), UNSPECIFIED too."""
    roles = list(config.channel_roles)
    for i, role in enumerate(roles):
        if role not in speech_pb2.ChannelRole.values():
            raise AudioError(f"config.channel_roles[{i}]: unknown value {role}")
    if roles.count(CUSTOMER) > 1:
        at = [i for i, r in enumerate(roles) if r == CUSTOMER]
        raise AudioError(
            f"config.channel_roles: channels {at} are all CUSTOMER; at most one channel is "
            "the customer's (AGENT and UNSPECIFIED may repeat)"
        )
    compressed = config.encoding in CONTAINERS and config.encoding != speech_pb2.AUDIO_ENCODING_WAV
    if compressed and (config.separate_channel_recognition or len(roles) > 1):
        raise AudioError(
            "config.separate_channel_recognition: per-channel recognition and roles are for "
            f"LINEAR16, MULAW, ALAW and WAV, not {ENCODING_NAMES[config.encoding]} (its "
            "channels are mixed into one; one role may name the whole stream)"
        )


def check_channels(config: speech_pb2.RecognitionConfig, channels: int) -> None:
    """The roles and per-channel recognition against the stream's channel count
    (from the config, or a WAV header once it has arrived)."""
    roles = len(config.channel_roles)
    if config.separate_channel_recognition and channels < 2:
        raise AudioError(
            "config.separate_channel_recognition: the stream has 1 channel; per-channel "
            "recognition needs 2 or more (set audio_channel_count, or send a stereo WAV)"
        )
    if roles > channels:
        raise AudioError(
            f"config.channel_roles: {roles} roles for a stream of {channels} channel(s); "
            f"role {channels} and after name channels that do not exist"
        )
    if roles and channels > 1 and not config.separate_channel_recognition:
        raise AudioError(
            "config.channel_roles: the channels of this stream are mixed into one; set "
            "separate_channel_recognition to give each channel a role"
        )


def mono_resampler() -> av.AudioResampler:
    """To 16 kHz mono float32. Stateful: one per stream, so chunk edges leave no clicks."""
    return av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)


FLOAT_FORMATS = frozenset({"flt", "fltp", "dbl", "dblp"})


def sound(frame: av.AudioFrame, name: str) -> av.AudioFrame:
    """A decoded frame fit for the resampler. Float samples must be numbers: one NaN
    or infinity would poison the resampler's and the VAD's state for the rest of the
    stream, silently losing every word after it. Float samples past full scale are
    clipped to it, as a player would."""
    if frame.format.name not in FLOAT_FORMATS:
        return frame
    data = frame.to_ndarray()
    if not np.isfinite(data).all():
        at = f" in the frame at {frame.time:.3f} s" if frame.time is not None else ""
        raise AudioError(
            f"audio_content: the {name} data holds float samples that are not numbers "
            f"(NaN or infinity){at}"
        )
    if np.abs(data).max(initial=0.0) <= 1.0:
        return frame
    full_scale = np.clip(data.astype(np.float64), -1.0, 1.0)  # dbl, dblp
    clipped = av.AudioFrame.from_ndarray(
        full_scale.astype(np.float32) if frame.format.name.startswith("flt") else full_scale,
        format=frame.format.name,
        layout=frame.layout.name,
    )
    clipped.sample_rate, clipped.pts, clipped.time_base = (
        frame.sample_rate,
        frame.pts,
        frame.time_base,
    )
    return clipped


def to_samples(frames: list[av.AudioFrame]) -> Samples:
    chunks = [f.to_ndarray().reshape(-1) for f in frames]
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def pcm_samples(data: bytes, law: str | None, channels: int) -> npt.NDArray[np.int16]:
    """Whole frames of 16-bit little-endian PCM (law None) or G.711 as (frames, channels)."""
    pcm = np.frombuffer(data, dtype="<i2") if law is None else g711.expand(data, law)
    return pcm.reshape(-1, channels)


def mono_frame(pcm: npt.NDArray[np.int16], rate: int) -> av.AudioFrame:
    """Samples of one channel, or interleaved channels averaged, as a mono frame."""
    mono = pcm if pcm.ndim == 1 else pcm.astype(np.int32).mean(axis=1).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(mono).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = rate
    return frame


def pcm16(samples: Samples) -> npt.NDArray[np.int16]:
    """Float samples back to 16-bit PCM (what a phone system sends)."""
    return np.clip(np.round(samples * 32768), -32768, 32767).astype(np.int16)


def decode_file(
    source: str | Path | BinaryIO,
    name: str,
    *,
    format: str | None = None,
    max_s: float | None = None,
) -> Samples:
    """A whole recording as 16 kHz mono float32: in the container `format` names (the
    one a request declared: other data is refused, naming what it is), else any
    FFmpeg reads. AudioTooLong past `max_s`."""
    resampler = mono_resampler()
    limit = None if max_s is None else int(max_s * SAMPLE_RATE)
    frames: list[av.AudioFrame] = []
    count = 0
    try:
        with av.open(source, mode="r") as container:
            found = container.format
            if format is not None and format not in found.name.split(","):
                raise AudioError(
                    f"audio_content: the data is {found.long_name or found.name}, not {name}; "
                    "set config.encoding to what it is"
                )
            if not container.streams.audio:
                raise AudioError(f"audio_content: the {name} data holds no audio stream")
            for frame in container.decode(audio=0):
                for out in resampler.resample(sound(frame, name)):
                    frames.append(out)
                    count += out.samples
                if limit is not None and count > limit:
                    raise AudioTooLong(
                        f"audio_content: the {name} data holds over {max_s:.0f} s of audio; "
                        "send it in parts, or stream it with StreamingRecognize"
                    )
    except AudioError:
        raise
    except (av.error.FFmpegError, ValueError) as exc:  # ValueError: its format changed
        raise AudioError(f"audio_content: not a readable {name} stream ({exc})") from exc
    return to_samples([*frames, *resampler.resample(None)])


def decode_raw(data: bytes, rate: int, channels: int, law: str | None = None) -> Samples:
    """Headerless 16-bit PCM or G.711 (`law` "mulaw"/"alaw") as 16 kHz mono."""
    width = (1 if law else 2) * channels
    if len(data) % width:
        kind = f"G.711 {law}" if law else "16-bit"
        raise AudioError(
            f"audio_content: {len(data)} bytes is not a whole number of {kind} samples "
            f"for {channels} channel(s)"
        )
    if not data:
        return np.zeros(0, np.float32)
    resampler = mono_resampler()
    frame = mono_frame(pcm_samples(data, law, channels), rate)
    return to_samples([*resampler.resample(frame), *resampler.resample(None)])
