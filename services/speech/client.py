"""How a caller streams a call to the speech service: config first, then audio chunks at
the pace it was spoken (or as fast as possible). `percept transcribe` and the demo use it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from percept.v1 import speech_pb2

RATE = 16_000  # 16 kHz mono 16-bit PCM
CHUNK_S = 0.1  # a call-center system sends 20-100 ms frames


async def call_requests(
    config: speech_pb2.RecognitionConfig,
    pcm: bytes,
    fast: bool = False,
    *,
    bytes_per_second: int = RATE * 2,
) -> AsyncIterator[speech_pb2.StreamingRecognizeRequest]:
    """`config`, then the audio (16 kHz LINEAR16 unless `bytes_per_second` says
    otherwise: 16000 for 8 kHz stereo G.711) in 100 ms chunks, each sent once it
    "has been spoken" unless `fast`."""
    yield speech_pb2.StreamingRecognizeRequest(config=config)
    step = int(bytes_per_second * CHUNK_S)
    start = time.perf_counter()
    for n, offset in enumerate(range(0, len(pcm), step)):
        if not fast:
            await asyncio.sleep(max(0.0, start + (n + 1) * CHUNK_S - time.perf_counter()))
        yield speech_pb2.StreamingRecognizeRequest(audio_content=pcm[offset : offset + step])
