"""The accuracy contract on real recordings (tests/real_media.py): streamed through
StreamingRecognize, a call's finals score within 0.01 WER of the bare model decoding
the whole recording with stock settings, same weights, same run; no final loops.

The chunks go in as fast as the service takes them: finals depend only on where the
VAD puts the utterances and on the audio, not on the pace (bench/speech.py streams
at real-time pace and measures latency).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import grpc
import numpy as np
import pytest
import real_media
from real_media import Call

from percept.models import model_store
from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.speech.audio import decode_linear16
from percept.speech.backends import FasterWhisperTranscriber, drop_loops
from percept.speech.service import SpeechService
from percept.v1 import speech_pb2 as sp
from percept.v1 import speech_pb2_grpc

pytestmark = pytest.mark.slow
FINAL = sp.RecognitionEvent.EVENT_TYPE_FINAL
TOLERANCE = 0.01


@pytest.fixture
async def speech(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[tuple[speech_pb2_grpc.SpeechAsyncStub, Settings]]:
    settings = make_settings()
    host = ServiceHost(SpeechService(settings), settings)
    await host.start()
    await asyncio.wait_for(host.ready.wait(), 120)
    try:
        async with grpc.aio.insecure_channel(host.address) as channel:
            yield speech_pb2_grpc.SpeechStub(channel), settings
    finally:
        await host.stop(grace=1)


def bare_transcript(settings: Settings, audio: np.ndarray, language: str) -> str:
    """The model alone on the whole recording: faster-whisper's stock transcribe."""
    path = model_store(settings).resolve(settings.speech_model).path
    model = FasterWhisperTranscriber(path, device="cpu").model
    segments, _ = model.transcribe(audio, language=language)
    return " ".join(s.text.strip() for s in segments)


async def streamed_finals(
    stub: speech_pb2_grpc.SpeechAsyncStub, config: sp.RecognitionConfig, data: bytes
) -> list[sp.RecognitionEvent]:
    step = config.sample_rate_hz // 10 * 2  # 100 ms chunks
    messages = [sp.StreamingRecognizeRequest(config=config)] + [
        sp.StreamingRecognizeRequest(audio_content=data[i : i + step])
        for i in range(0, len(data), step)
    ]
    return [e async for e in stub.StreamingRecognize(iter(messages)) if e.type == FINAL]


CALLS: dict[str, Callable[[], Call]] = {
    "english-8khz-call": lambda: real_media.telephone_call("en", 25),
    "librivox-16khz": lambda: real_media.join(real_media.librivox(), "en"),
}


@pytest.mark.parametrize("name", list(CALLS))
async def test_streamed_finals_score_as_well_as_the_bare_model(
    speech: tuple[speech_pb2_grpc.SpeechAsyncStub, Settings], name: str
) -> None:
    stub, settings = speech
    call = CALLS[name]()
    data = call.pcm.tobytes()
    config = sp.RecognitionConfig(
        encoding=sp.AUDIO_ENCODING_LINEAR16,
        sample_rate_hz=call.rate,
        interim_results=False,
        language_code=call.language,
    )
    finals = await streamed_finals(stub, config, data)
    streamed = " ".join(f.transcript for f in finals)
    bare = bare_transcript(settings, decode_linear16(data, call.rate, 1), call.language)
    ours, theirs = (real_media.wer(call.text, t, call.language) for t in (streamed, bare))
    assert ours <= theirs + TOLERANCE, f"streamed {ours:.4f}, bare {theirs:.4f}: {streamed}"
    assert [f.transcript for f in finals if drop_loops(f.transcript) != f.transcript] == []
    assert len(finals) >= len(call.clips) - 1  # one final per prompt (two may merge)
