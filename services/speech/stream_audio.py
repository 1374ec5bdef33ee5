"""Incremental decoding of a live audio stream into 16 kHz float32: mono, or one
row per channel for per-channel recognition.

Headerless chunks (LINEAR16, G.711) are resampled as they arrive (stateful
resamplers, so chunk boundaries leave no clicks). Containers (WAV, FLAC, Ogg-Opus) need a demuxer
that reads ahead: FFmpeg runs in a thread of the call's own, fed through a
blocking pipe, and the samples it has produced so far are taken after each chunk.
"""

from __future__ import annotations

import io
import struct
import threading
from typing import Protocol

import av
import numpy as np

from percept.speech.audio import (
    CONTAINERS,
    MAX_CHANNELS,
    MAX_RATE,
    MIN_RATE,
    RAW,
    SAMPLE_RATE,
    AudioError,
    AudioTooLong,
    Samples,
    check_channels,
    check_config,
    decode_file,
    mono_frame,
    mono_resampler,
    pcm_samples,
    sound,
    to_samples,
)
from percept.v1 import speech_pb2

DEMUXERS = {
    speech_pb2.AUDIO_ENCODING_WAV: "wav",
    speech_pb2.AUDIO_ENCODING_FLAC: "flac",
    speech_pb2.AUDIO_ENCODING_OGG_OPUS: "ogg",
}
# The demuxer is named, so FFmpeg need not read far ahead to guess it: decoding
# keeps up with the call instead of waiting for megabytes of audio.
PROBE = {"probesize": "4096", "analyzeduration": "0"}
# A decoder thread that has not finished this long after the end of input is stuck.
JOIN_TIMEOUT_S = 10.0


class StreamDecoder(Protocol):
    def feed(self, data: bytes) -> Samples:
        """Samples decoded so far that were not returned before."""
        ...

    def finish(self) -> Samples:
        """The remaining samples once the input has ended."""
        ...

    def close(self) -> None:
        """Frees the decoder even mid-stream (the call was cancelled)."""
        ...


class PcmStreamDecoder:
    """Headerless 16-bit PCM (`law` None) or G.711 ("mulaw", "alaw"). `strict`: each
    chunk must hold whole frames (what the API promises for raw audio); otherwise a
    split frame waits for the next chunk (WAV data). `split`: one row of samples per
    channel, each resampled on its own, instead of the channels' mix."""

    def __init__(
        self,
        rate: int,
        channels: int,
        *,
        law: str | None = None,
        strict: bool = True,
        split: bool = False,
    ) -> None:
        self.rate, self.channels, self.law = rate, channels, law
        self.strict, self.split = strict, split
        self.resamplers = [mono_resampler() for _ in range(channels if split else 1)]
        self.received = 0
        self.carry = b""

    def feed(self, data: bytes) -> Samples:
        width = (1 if self.law else 2) * self.channels
        if self.strict and len(data) % width:
            kind = f"G.711 {self.law}" if self.law else "16-bit"
            raise AudioError(
                f"audio_content: a chunk of {len(data)} bytes (at byte {self.received}) is not "
                f"a whole number of {kind} frames for {self.channels} channel(s); "
                "send chunks of whole frames"
            )
        self.received += len(data)
        if not self.strict:
            data = self.carry + data
            whole = len(data) - len(data) % width
            data, self.carry = data[:whole], data[whole:]
        if not data:
            return self._empty()
        pcm = pcm_samples(data, self.law, self.channels)
        if not self.split:
            return to_samples(self.resamplers[0].resample(mono_frame(pcm, self.rate)))
        return self._rows(
            [
                to_samples(r.resample(mono_frame(pcm[:, c], self.rate)))
                for c, r in enumerate(self.resamplers)
            ]
        )

    def finish(self) -> Samples:
        rows = [to_samples(r.resample(None)) for r in self.resamplers]
        return self._rows(rows) if self.split else rows[0]

    def _empty(self) -> Samples:
        return np.zeros((self.channels, 0) if self.split else 0, np.float32)

    @staticmethod
    def _rows(rows: list[Samples]) -> Samples:
        # identical resamplers fed identical lengths give identical lengths
        n = min(len(r) for r in rows)
        return np.stack([r[:n] for r in rows])

    def close(self) -> None:
        pass


class _Pipe(io.RawIOBase):
    """Bytes written by the call, read (blocking) by FFmpeg in the decoder thread."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._ready = threading.Condition()
        self._ended = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        with self._ready:
            self._ready.wait_for(lambda: self._buffer or self._ended)
            n = min(len(target), len(self._buffer))
            target[:n] = self._buffer[:n]
            del self._buffer[:n]
            return n

    def write_bytes(self, data: bytes) -> None:
        with self._ready:
            self._buffer += data
            self._ready.notify()

    @property
    def ended(self) -> bool:
        return self._ended

    def end(self, *, discard: bool = False) -> None:
        with self._ready:
            if discard:
                self._buffer.clear()
            self._ended = True
            self._ready.notify()


class ContainerStreamDecoder:
    def __init__(self, name: str, format: str) -> None:
        self.name, self.format = name, format
        self.pipe = _Pipe()
        self.lock = threading.Lock()
        self.decoded: list[Samples] = []
        self.error: AudioError | None = None
        self.got_data = False
        self.samples_out = 0
        self.thread = threading.Thread(target=self._run, name=f"decode-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        resampler = mono_resampler()
        try:
            with av.open(
                self.pipe, mode="r", format=self.format, buffer_size=4096, options=PROBE
            ) as container:
                if not container.streams.audio:
                    raise AudioError(f"audio_content: the {self.name} data holds no audio stream")
                for frame in container.decode(audio=0):
                    self._keep(to_samples(resampler.resample(sound(frame, self.name))))
            self._keep(to_samples(resampler.resample(None)))
        except AudioError as exc:
            self.error = exc
        except (av.error.FFmpegError, ValueError) as exc:
            # No data at all is an empty stream; a stream cut inside its last frame
            # keeps what came before it. Anything else is bad data.
            if self.got_data and not (self.pipe.ended and self.samples_out):
                self.error = AudioError(f"audio_content: not a readable {self.name} stream ({exc})")

    def _keep(self, samples: Samples) -> None:
        with self.lock:
            self.decoded.append(samples)
            self.samples_out += len(samples)

    def _take(self) -> Samples:
        if self.error is not None:
            raise self.error
        with self.lock:
            out, self.decoded = self.decoded, []
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def feed(self, data: bytes) -> Samples:
        if data:
            self.got_data = True
            self.pipe.write_bytes(data)
        return self._take()

    def finish(self) -> Samples:
        self.pipe.end()
        self.thread.join(JOIN_TIMEOUT_S)
        if self.thread.is_alive():
            raise AudioError(f"audio_content: the {self.name} stream could not be decoded in time")
        return self._take()

    def close(self) -> None:
        self.pipe.end(discard=True)


# WAV format codes (RFC 2361) read here: PCM, IEEE float, A-law, mu-law.
WAV_PCM, WAV_FLOAT, WAV_ALAW, WAV_MULAW, WAV_EXTENSIBLE = 1, 3, 6, 7, 0xFFFE
WAV_LAWS = {WAV_ALAW: "alaw", WAV_MULAW: "mulaw"}
WAV_BITS = {WAV_PCM: (8, 16, 24, 32), WAV_FLOAT: (32, 64), WAV_ALAW: (8,), WAV_MULAW: (8,)}


class WavStreamDecoder:
    """16-bit PCM and G.711 WAV are read as headerless audio once the header has
    arrived: FFmpeg would buffer about a second and a half before its first
    sample. Other PCM sample sizes and float go to FFmpeg; compressed formats
    (ADPCM, GSM, MP3 in WAV...) are refused with their format code."""

    MAX_HEADER = 64 * 1024

    def __init__(self, config: speech_pb2.RecognitionConfig | None = None) -> None:
        self.config = config or speech_pb2.RecognitionConfig()
        self.header = b""
        self.inner: StreamDecoder | None = None

    def feed(self, data: bytes) -> Samples:
        if self.inner is not None:
            return self.inner.feed(data)
        self.header += data
        parsed = self._parse()
        if parsed is None:
            if len(self.header) > self.MAX_HEADER:
                raise AudioError(
                    f"audio_content: no WAV data chunk in the first {self.MAX_HEADER} bytes"
                )
            return np.zeros(0, np.float32)
        (tag, rate, channels, bits), offset = parsed
        split = self.config.separate_channel_recognition
        check_channels(self.config, channels)
        if (tag == WAV_PCM and bits == 16) or (tag in WAV_LAWS and bits == 8):
            law = WAV_LAWS.get(tag)
            self.inner = PcmStreamDecoder(rate, channels, law=law, strict=False, split=split)
            return self.inner.feed(self.header[offset:])
        if split:
            raise AudioError(
                f"audio_content: a WAV of {bits}-bit format {tag}: per-channel recognition "
                "reads 16-bit PCM, mu-law or A-law WAV"
            )
        self.inner = ContainerStreamDecoder("WAV", "wav")
        return self.inner.feed(self.header)

    def _parse(self) -> tuple[tuple[int, int, int, int], int] | None:
        """((format code, rate, channels, bits), offset of the samples), or None
        while the header is incomplete."""
        h = self.header
        if len(h) < 12:
            return None
        if h[:4] != b"RIFF" or h[8:12] != b"WAVE":
            raise AudioError("audio_content: not a readable WAV stream (no RIFF/WAVE header)")
        pos, fmt = 12, None
        while len(h) >= pos + 8:
            chunk, size = h[pos : pos + 4], struct.unpack_from("<I", h, pos + 4)[0]
            if chunk == b"data":
                if fmt is None:
                    raise AudioError("audio_content: the WAV data chunk comes before any fmt chunk")
                return fmt, pos + 8
            if len(h) < pos + 8 + size:
                return None
            if chunk == b"fmt " and size >= 16:
                tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", h, pos + 8)
                if not 1 <= channels <= MAX_CHANNELS or not MIN_RATE <= rate <= MAX_RATE:
                    raise AudioError(
                        f"audio_content: WAV header says {channels} channel(s) at {rate} Hz, "
                        f"outside 1-{MAX_CHANNELS} channels and {MIN_RATE}-{MAX_RATE} Hz"
                    )
                if tag == WAV_EXTENSIBLE and size >= 26:  # the real code leads the GUID
                    tag = struct.unpack_from("<H", h, pos + 8 + 24)[0]
                if tag not in (WAV_PCM, WAV_FLOAT, *WAV_LAWS):
                    raise AudioError(
                        f"audio_content: WAV format code {tag:#06x} is not PCM (1), IEEE "
                        "float (3), A-law (6) or mu-law (7)"
                    )
                if bits not in WAV_BITS[tag]:
                    raise AudioError(
                        f"audio_content: WAV header says {bits} bits a sample for format "
                        f"{tag}; it has {' or '.join(map(str, WAV_BITS[tag]))}"
                    )
                fmt = (tag, rate, channels, bits)
            pos += 8 + size + (size & 1)
        return None

    def finish(self) -> Samples:
        if self.inner is None:
            if self.header:
                raise AudioError("audio_content: the WAV stream ended inside its header")
            return np.zeros(0, np.float32)
        return self.inner.finish()

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()


def stream_decoder(config: speech_pb2.RecognitionConfig) -> StreamDecoder:
    """The decoder for a stream's config: mono samples, or one row per channel when
    the config asks for separate recognition."""
    check_config(config)
    if config.encoding in RAW:
        return PcmStreamDecoder(
            config.sample_rate_hz,
            config.audio_channel_count or 1,
            law=RAW[config.encoding],
            split=config.separate_channel_recognition,
        )
    if config.encoding == speech_pb2.AUDIO_ENCODING_WAV:
        return WavStreamDecoder(config)
    return ContainerStreamDecoder(CONTAINERS[config.encoding], DEMUXERS[config.encoding])


def decode_all(config: speech_pb2.RecognitionConfig, data: bytes, max_s: float) -> Samples:
    """A whole recording (Recognize) through the stream decoders, so both RPCs read
    and refuse the same audio the same way. AudioTooLong past `max_s`."""
    if config.separate_channel_recognition:
        raise AudioError(
            "config.separate_channel_recognition: for StreamingRecognize; Recognize "
            "transcribes the channels' mix"
        )
    if config.encoding in DEMUXERS and config.encoding != speech_pb2.AUDIO_ENCODING_WAV:
        check_config(config)  # a whole file: FFmpeg may probe all of it
        if not data:
            return np.zeros(0, np.float32)
        return decode_file(
            io.BytesIO(data),
            CONTAINERS[config.encoding],
            format=DEMUXERS[config.encoding],
            max_s=max_s,
        )
    decoder = stream_decoder(config)
    try:
        parts = [decoder.feed(data), decoder.finish()]
    finally:
        decoder.close()
    audio = np.concatenate(parts)
    if len(audio) > max_s * SAMPLE_RATE:
        raise AudioTooLong(
            f"audio_content: over {max_s:.0f} s of audio; send it in parts, or stream it "
            "with StreamingRecognize"
        )
    return audio
