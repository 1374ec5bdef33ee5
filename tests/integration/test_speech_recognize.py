"""Speech Recognize on the real packaged Whisper tiny.en weights, with espeak-ng speech."""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from speech_audio import MAX_WER, encoded, float_wav, speak, wav_file, wer

from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.speech.service import SpeechService
from percept.v1 import common_pb2, speech_pb2_grpc
from percept.v1 import speech_pb2 as sp

pytestmark = pytest.mark.slow
SENTENCE = "Hello, I want to buy two phones for my office."
TONE = (0.1 * np.sin(np.arange(16000) / 8000 * 2 * np.pi * 440)).astype(np.float32)


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return speak(SENTENCE, tmp_path_factory.mktemp("speech") / "s.wav")


@pytest.fixture
async def stub(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[speech_pb2_grpc.SpeechAsyncStub]:
    settings = make_settings()
    host = ServiceHost(SpeechService(settings), settings)
    await host.start()
    await asyncio.wait_for(host.ready.wait(), 120)
    async with grpc.aio.insecure_channel(host.address) as channel:
        yield speech_pb2_grpc.SpeechStub(channel)
    await host.stop(grace=1)


def wav_config() -> sp.RecognitionConfig:
    return sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_WAV)


async def test_a_wav_recording_is_transcribed_with_word_times(
    stub: speech_pb2_grpc.SpeechAsyncStub, speech_wav: bytes
) -> None:
    reply = await stub.Recognize(sp.RecognizeRequest(config=wav_config(), audio_content=speech_wav))
    text = " ".join(r.transcript for r in reply.results)
    assert wer(SENTENCE, text) <= MAX_WER, text
    assert reply.language_code == "en"
    duration = reply.audio_duration.ToTimedelta().total_seconds()
    assert 2.0 < duration < 6.0
    times = [
        (w.start_offset.ToTimedelta().total_seconds(), w.end_offset.ToTimedelta().total_seconds())
        for r in reply.results
        for w in r.words
    ]
    assert len(times) >= 8
    assert all(start <= end <= duration + 0.5 for start, end in times)
    assert [s for s, _ in times] == sorted(s for s, _ in times)
    assert all(r.type == sp.RecognitionEvent.EVENT_TYPE_FINAL for r in reply.results)
    assert 0 < reply.results[0].confidence <= 1


async def test_raw_pcm_at_another_rate_and_in_stereo_is_resampled(
    stub: speech_pb2_grpc.SpeechAsyncStub, speech_wav: bytes
) -> None:
    with wave.open(io.BytesIO(speech_wav)) as w:
        rate, mono = w.getframerate(), w.readframes(w.getnframes())
    assert rate == 22050  # espeak-ng's own rate: the server must resample
    stereo = b"".join(mono[i : i + 2] * 2 for i in range(0, len(mono), 2))
    for data, channels in ((mono, 1), (stereo, 2)):
        config = sp.RecognitionConfig(
            encoding=sp.AUDIO_ENCODING_LINEAR16, sample_rate_hz=rate, audio_channel_count=channels
        )
        reply = await stub.Recognize(sp.RecognizeRequest(config=config, audio_content=data))
        text = " ".join(r.transcript for r in reply.results)
        assert wer(SENTENCE, text) <= MAX_WER, (channels, text)


async def test_silence_gives_no_result_and_no_error(stub: speech_pb2_grpc.SpeechAsyncStub) -> None:
    config = sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16000)
    reply = await stub.Recognize(
        sp.RecognizeRequest(config=config, audio_content=b"\x00\x00" * 32000)
    )
    assert list(reply.results) == []
    assert reply.audio_duration.ToTimedelta().total_seconds() == pytest.approx(2.0, abs=0.01)


@pytest.mark.parametrize(
    ("config", "audio", "words_in_error"),
    [
        (sp.RecognitionConfig(), b"\x00\x00", "config.encoding: required"),
        (sp.RecognitionConfig(encoding=99), b"\x00\x00", "config.encoding: unknown value 99"),  # type: ignore[arg-type]
        (
            sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_LINEAR16),
            b"\x00\x00",
            "config.sample_rate_hz: 0 is not between 8000 and 192000",
        ),
        (
            sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_LINEAR16, sample_rate_hz=10_000_000),
            b"\x00\x00",
            "config.sample_rate_hz: 10000000",
        ),
        (
            sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16000),
            b"\x00\x00\x00",
            "3 bytes (at byte 0) is not a whole number of 16-bit frames for 1 channel",
        ),
        (
            sp.RecognitionConfig(
                encoding=sp.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16000, audio_channel_count=2
            ),
            b"\x00\x00",
            "for 2 channel(s)",
        ),
        (
            sp.RecognitionConfig(
                encoding=sp.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16000, audio_channel_count=50
            ),
            b"",
            "audio_channel_count: 50",
        ),
        (wav_config(), b"this is not a wav file at all" * 10, "not a readable WAV stream"),
        (
            sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_MULAW),
            b"\xff" * 160,
            "config.sample_rate_hz: 0 is not between 8000 and 192000 (required for MULAW)",
        ),
        (
            sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_ALAW, sample_rate_hz=1_000_000),
            b"\xd5" * 160,
            "config.sample_rate_hz: 1000000 is not between 8000 and 192000 (required for ALAW)",
        ),
        (wav_config(), wav_file(b"\x00" * 65, tag=0x0031), "WAV format code 0x0031 is not PCM"),
        (
            sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_FLAC),
            b"\xff\xfe" * 500,
            "not a readable FLAC stream",
        ),
        (
            sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_FLAC),
            encoded("mp2", "mp2", TONE, 22050),
            "the data is MP2/3 (MPEG audio layer 2/3), not FLAC",
        ),
        (
            wav_config(),
            float_wav(np.concatenate([TONE, [np.nan], TONE])),
            "the WAV data holds float samples that are not numbers (NaN or infinity)",
        ),
        (wav_config(), wav_file(b"\x00" * 64, bits=7), "WAV header says 7 bits a sample"),
        # leads would refuse every signal of the call, after the caller was told OK
        (
            sp.RecognitionConfig(
                encoding=sp.AUDIO_ENCODING_LINEAR16,
                sample_rate_hz=16000,
                caller=common_pb2.IdentityKeys(phone="+1415555012"),
            ),
            b"\x00\x00",
            "config.caller.phone: '+1415555012' is not a valid phone number",
        ),
        (
            sp.RecognitionConfig(
                encoding=sp.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16000, call_id="c" * 300
            ),
            b"\x00\x00",
            "config.call_id: must be printable and at most 200 characters",
        ),
        (
            sp.RecognitionConfig(
                encoding=sp.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16000, campaign_id="k" * 4001
            ),
            b"\x00\x00",
            "config.campaign_id: longer than 4000 characters",
        ),
        (
            wav_config(),
            wav_file(b"\x00" * 64, tag=7, bits=16),
            "WAV header says 16 bits a sample for format 7; it has 8",
        ),
        (
            sp.RecognitionConfig(
                encoding=sp.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16000, redact=["card", "pin"]
            ),
            b"\x00\x00",
            "config.redact: 'pin' is not a redaction kind (card, national_id, iban, phone",
        ),
    ],
)
async def test_bad_audio_is_invalid_argument_naming_the_field(
    stub: speech_pb2_grpc.SpeechAsyncStub,
    config: sp.RecognitionConfig,
    audio: bytes,
    words_in_error: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        await stub.Recognize(sp.RecognizeRequest(config=config, audio_content=audio), timeout=30)
    assert excinfo.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert words_in_error in (excinfo.value.details() or "")


async def test_compressed_audio_past_the_stream_limit_is_resource_exhausted(
    make_settings: Callable[..., Settings],
) -> None:
    """Two minutes of silence are a few kilobytes of FLAC: Recognize decodes no more
    than a stream may carry (`speech_max_stream_s`), as StreamingRecognize does."""
    settings = make_settings(speech_max_stream_s=60)
    host = ServiceHost(SpeechService(settings), settings)
    await host.start()
    try:
        await asyncio.wait_for(host.ready.wait(), 120)
        flac = encoded("flac", "flac", np.zeros(8000 * 120, np.float32), 8000)
        assert len(flac) < 100_000
        async with grpc.aio.insecure_channel(host.address) as channel:
            stub = speech_pb2_grpc.SpeechStub(channel)
            config = sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_FLAC)
            with pytest.raises(grpc.aio.AioRpcError) as excinfo:
                await stub.Recognize(sp.RecognizeRequest(config=config, audio_content=flac))
            assert excinfo.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "over 60 s of audio" in (excinfo.value.details() or "")
            short = encoded("flac", "flac", TONE, 8000)  # under the limit: transcribed
            reply = await stub.Recognize(sp.RecognizeRequest(config=config, audio_content=short))
            assert reply.audio_duration.ToTimedelta().total_seconds() == pytest.approx(2, 0.05)
    finally:
        await host.stop(grace=1)


async def test_truncated_wav_is_refused_or_transcribed_never_a_crash(
    stub: speech_pb2_grpc.SpeechAsyncStub, speech_wav: bytes
) -> None:
    half = speech_wav[: len(speech_wav) // 2]
    reply = await stub.Recognize(sp.RecognizeRequest(config=wav_config(), audio_content=half))
    assert reply.audio_duration.ToTimedelta().total_seconds() > 1.0


async def test_finals_carry_intents_and_entities(
    stub: speech_pb2_grpc.SpeechAsyncStub, tmp_path: Path
) -> None:
    # Robust at espeak-ng rates 130-170 with tiny.en ("three" can come out as "free").
    audio = speak(
        "I would like to purchase two laptops. My budget is two thousand dollars.",
        tmp_path / "buy.wav",
    )
    reply = await stub.Recognize(sp.RecognizeRequest(config=wav_config(), audio_content=audio))
    intents = {i.name for r in reply.results for i in r.intents}
    entities = {(e.type, e.normalized_value) for r in reply.results for e in r.entities}
    assert "purchase_intent" in intents
    assert {("product", "laptop"), ("quantity", "2"), ("money", "2000.00 USD")} <= entities
