"""G.711 and per-channel decoding: the telephony side of the stream decoders."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from speech_audio import wav_file

from percept.speech import g711
from percept.speech.audio import AudioError, check_config
from percept.speech.stream_audio import PcmStreamDecoder, WavStreamDecoder, stream_decoder
from percept.v1 import speech_pb2 as sp

with warnings.catch_warnings():  # deprecated, still the reference in Python 3.11
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

CODES = bytes(range(256))


@pytest.mark.parametrize(
    ("law", "reference"), [("mulaw", audioop.ulaw2lin), ("alaw", audioop.alaw2lin)]
)
def test_g711_expands_every_code_as_the_reference_does(law: str, reference: object) -> None:
    expected = np.frombuffer(reference(CODES, 2), "<i2")  # type: ignore[operator]
    assert np.array_equal(g711.expand(CODES, law), expected)


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
def test_g711_compression_round_trips_and_keeps_the_signal(law: str) -> None:
    assert g711.compress(g711.expand(CODES, law), law) == bytes(
        g711.compress(g711.TABLES[law], law)
    )
    t = np.arange(8000) / 8000
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    back = g711.expand(g711.compress(tone, law), law).astype(float)
    snr = 10 * np.log10(np.sum(tone.astype(float) ** 2) / np.sum((back - tone) ** 2))
    assert snr > 30  # G.711's ~38 dB for a loud tone


def _tone(freq: float, seconds: float = 1.0, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (6000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def test_a_stereo_mulaw_stream_splits_into_one_16k_row_per_channel() -> None:
    left, right = _tone(300), np.zeros(8000, np.int16)
    interleaved = np.stack([left, right], axis=1).reshape(-1)
    data = g711.compress(interleaved, "mulaw")
    decoder = PcmStreamDecoder(8000, 2, law="mulaw", split=True)
    rows = [decoder.feed(data[i : i + 320]) for i in range(0, len(data), 320)]
    out = np.concatenate([*rows, decoder.finish()], axis=1)
    assert out.shape[0] == 2 and abs(out.shape[1] - 16000) <= 64
    assert np.sqrt(np.mean(out[0] ** 2)) > 0.1 and np.sqrt(np.mean(out[1] ** 2)) < 0.001


@pytest.mark.parametrize(("tag", "law"), [(7, "mulaw"), (6, "alaw")])
def test_a_g711_wav_is_decoded_as_it_arrives(tag: int, law: str) -> None:
    data = g711.compress(_tone(440), law)
    wav = wav_file(data, tag=tag)
    decoder = WavStreamDecoder(sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_WAV))
    first = decoder.feed(wav[: 44 + 800])  # header and 0.1 s: samples come out at once
    assert len(first) > 1000
    rest = np.concatenate([decoder.feed(wav[44 + 800 :]), decoder.finish()])
    assert abs(len(first) + len(rest) - 16000) <= 64


def test_a_stereo_wav_splits_when_asked_and_roles_are_checked_against_its_header() -> None:
    pcm = np.stack([_tone(300), _tone(500)], axis=1).reshape(-1)
    wav = wav_file(g711.compress(pcm, "alaw"), tag=6, channels=2)
    config = sp.RecognitionConfig(
        encoding=sp.AUDIO_ENCODING_WAV,
        separate_channel_recognition=True,
        channel_roles=[sp.CHANNEL_ROLE_AGENT, sp.CHANNEL_ROLE_CUSTOMER],
    )
    rows = WavStreamDecoder(config).feed(wav)
    assert rows.shape[0] == 2 and rows.shape[1] > 15000
    config.channel_roles.append(sp.CHANNEL_ROLE_AGENT)
    with pytest.raises(AudioError, match="3 roles for a stream of 2 channel"):
        WavStreamDecoder(config).feed(wav)
    mono = wav_file(g711.compress(_tone(300), "alaw"), tag=6)
    with pytest.raises(AudioError, match="the stream has 1 channel"):
        WavStreamDecoder(sp.RecognitionConfig(separate_channel_recognition=True)).feed(mono)


def test_compressed_wav_formats_are_refused_with_their_code() -> None:
    with pytest.raises(AudioError, match=r"WAV format code 0x0002 is not PCM \(1\)"):
        WavStreamDecoder().feed(wav_file(b"\x00" * 100, tag=2, bits=4))


def _telephony(**fields: object) -> sp.RecognitionConfig:
    base: dict[str, object] = {"encoding": sp.AUDIO_ENCODING_MULAW, "sample_rate_hz": 8000}
    return sp.RecognitionConfig(**(base | fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sample_rate_hz": 0}, "config.sample_rate_hz: 0 is not between 8000 and 192000"),
        ({"sample_rate_hz": 10**9}, "required for MULAW"),
        ({"separate_channel_recognition": True}, "the stream has 1 channel"),
        (
            {
                "audio_channel_count": 2,
                "channel_roles": [1, 2, 1],
                "separate_channel_recognition": True,
            },
            "3 roles for a stream of 2 channel(s)",
        ),
        (
            {
                "audio_channel_count": 2,
                "channel_roles": [2, 2],
                "separate_channel_recognition": True,
            },
            "channels [0, 1] are all CUSTOMER",
        ),
        ({"audio_channel_count": 2, "channel_roles": [1, 2]}, "mixed into one"),
        ({"channel_roles": [7]}, "config.channel_roles[0]: unknown value 7"),
        (
            {"encoding": sp.AUDIO_ENCODING_FLAC, "separate_channel_recognition": True},
            "not FLAC",
        ),
    ],
)
def test_channel_and_codec_configs_are_refused_naming_the_field(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(AudioError) as excinfo:
        check_config(_telephony(**fields))
    assert message in str(excinfo.value)


def test_two_agents_and_a_customer_are_allowed() -> None:
    roles = [sp.CHANNEL_ROLE_AGENT, sp.CHANNEL_ROLE_AGENT, sp.CHANNEL_ROLE_CUSTOMER]
    config = _telephony(
        audio_channel_count=3, channel_roles=roles, separate_channel_recognition=True
    )
    decoder = stream_decoder(config)
    rows = np.concatenate([decoder.feed(b"\xff" * 2400), decoder.finish()], axis=1)
    assert rows.shape == (3, 1600)  # 0.1 s of each channel at 16 kHz
