"""Real stereo calls for bench/speech.py (section 4): what a call center sends.

Real 8 kHz telephone prompts (Asterisk's, tests/real_media.py) as two-channel
mu-law: the agent's turn on channel 0 while channel 1 is a quiet line, then the
customer's on channel 1, and so on. Measured in one run, against baselines of
the same run:
- WER of the streamed finals per channel against the bare model decoding that
  channel's whole recording with stock settings;
- N concurrent stereo calls at real-time pace (partials on) per model: the
  end-of-speech -> FINAL delay per channel, and whether the service holds N
  (every final within HOLD_S of its speech's end).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt
import real_media

from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.speech import g711
from percept.speech.audio import decode_raw
from percept.speech.service import SpeechService
from percept.v1 import speech_pb2 as sp
from percept.v1 import speech_pb2_grpc

RATE = 8000
CHUNK_S = 0.1
HOLD_S = 2.0
TURNS = 8  # per side
ROLES = (sp.CHANNEL_ROLE_AGENT, sp.CHANNEL_ROLE_CUSTOMER)


def stereo_call(seed: int) -> tuple[bytes, list[str], list[npt.NDArray[np.int16]]]:
    """Mu-law stereo bytes, each channel's words, each channel's samples."""
    channels = real_media.stereo_call("en", TURNS, seed=seed)
    data = g711.compress(real_media.interleaved(*channels), "mulaw")
    return data, [c.text for c in channels], [c.pcm for c in channels]


def config() -> sp.RecognitionConfig:
    return sp.RecognitionConfig(
        encoding=sp.AUDIO_ENCODING_MULAW,
        sample_rate_hz=RATE,
        audio_channel_count=2,
        separate_channel_recognition=True,
        channel_roles=ROLES,
        language_code="en",
        interim_results=True,
    )


async def stream(
    stub: speech_pb2_grpc.SpeechAsyncStub, data: bytes, *, paced: bool
) -> tuple[list[sp.RecognitionEvent], dict[int, list[float]]]:
    """The finals, and per channel the delays from speech end to FINAL."""
    step = int(CHUNK_S * RATE) * 2
    start = time.perf_counter()

    async def requests() -> AsyncIterator[sp.StreamingRecognizeRequest]:
        yield sp.StreamingRecognizeRequest(config=config())
        for n, offset in enumerate(range(0, len(data), step)):
            if paced:
                await asyncio.sleep(max(0.0, start + (n + 1) * CHUNK_S - time.perf_counter()))
            yield sp.StreamingRecognizeRequest(audio_content=data[offset : offset + step])

    finals, delays = [], {0: [], 1: []}  # type: ignore[var-annotated]
    async for event in stub.StreamingRecognize(requests()):
        if event.type != sp.RecognitionEvent.EVENT_TYPE_FINAL:
            continue
        finals.append(event)
        if paced and event.words:
            spoken_until = event.words[-1].end_offset.ToNanoseconds() / 1e9
            sent_at = start + (int(spoken_until / CHUNK_S) + 1) * CHUNK_S
            delays[event.channel].append(time.perf_counter() - sent_at)
    return finals, delays


async def serve(folder: Path, model: str) -> ServiceHost:
    settings = Settings(
        data_dir=folder / "data",
        model_dir=Settings().resolved_model_dir,
        speech_model=model,
        speech_port=0,
        speech_gateway=False,
        metrics_enabled=False,
        log_level="WARNING",
    )
    host = ServiceHost(SpeechService(settings), settings)
    await host.start()
    await host.ready.wait()
    return host


async def real_calls(folder: Path, plan: str) -> None:
    print("\n4. real stereo calls: 8 kHz mu-law, agent and customer taking turns")
    data, texts, channels = stereo_call(seed=0)
    print(f"   one call: {TURNS} turns a side, {len(channels[0]) / RATE:.0f} s")
    for part in plan.split(";"):
        model, counts = part.split(":")
        host = await serve(folder, model)
        try:
            async with grpc.aio.insecure_channel(host.address) as channel:
                stub = speech_pb2_grpc.SpeechStub(channel)
                finals, _ = await stream(stub, data, paced=False)
                for c, role in enumerate(("agent", "customer")):
                    streamed = " ".join(f.transcript for f in finals if f.channel == c)
                    audio = decode_raw(g711.compress(channels[c], "mulaw"), RATE, 1, "mulaw")
                    alone = real_media.bare_transcript(host.settings, audio, "en")
                    print(
                        f"   {model} {role:8s} WER streamed "
                        f"{real_media.wer(texts[c], streamed, 'en'):.4f}, bare "
                        f"{real_media.wer(texts[c], alone, 'en'):.4f}"
                    )
                for n in (int(x) for x in counts.split(",")):
                    results = await asyncio.gather(
                        *(stream(stub, data, paced=True) for _ in range(n))
                    )
                    per = {c: [d for _, r in results for d in r[c]] for c in (0, 1)}
                    every = per[0] + per[1]
                    expected = n * 2 * TURNS
                    held = len(every) >= expected - n and max(every) <= HOLD_S
                    print(
                        f"   {model} {n} stereo call(s): finals {len(every)}/{expected}; "
                        + "; ".join(
                            f"{role} median {statistics.median(per[c]):.2f} s max "
                            f"{max(per[c]):.2f} s"
                            for c, role in enumerate(("agent", "customer"))
                            if per[c]
                        )
                        + f" -> {'holds' if held else 'falls behind'}"
                    )
        finally:
            await host.stop(grace=1)
