"""Speech service speed, against baselines measured in the same run.

1. Service overhead: `Recognize` over gRPC (decoding, resampling, intents,
   entities) against the bare backend call on the same samples; stock
   faster-whisper (30 s windows), and openai-whisper on the same weights
   (rebuilt from the CTranslate2 ones) for reference. Target: overhead <= 10 %.
2. Latency: a call streamed at real-time pace in 100 ms chunks; the delay from
   the end of each utterance's speech (its last word, in audio time, mapped to
   the wall-clock moment that audio was sent) to its FINAL. Target: median
   <= 1 s with tiny.en on 2 cores.
3. Capacity: N calls streamed at once at real-time pace, with partials; the
   service holds N when every final still arrives within 2 s of speech end.
5. Call analytics (bench/speech_analytics.py): redaction, sentiment, categories
   per final and the summary per call, against the model's decode of a final;
   sentiment against VADER on the held-out utterances.
4. Real stereo calls (bench/speech_calls.py): real 8 kHz telephone prompts as
   mu-law stereo, agent and customer taking turns; streamed-vs-bare WER per
   channel, and N concurrent stereo calls at real-time pace with tiny.en and
   base, latency per channel.
6. Accuracy on real calls (bench/speech_accuracy.py): mono 8 kHz calls of real
   English (tiny.en) and Spanish (base) telephone prompts streamed; finals' WER
   against the bare model on the whole recording, and against the bare model on
   the call started 0.7 s later (how far one call's figure moves at all).
   Contract: within 0.01 of bare.

Audio is espeak-ng speech (call-center sentences with pauses between them).
Run: .venv/bin/python bench/speech.py [--streams 1,2,3,4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt

from percept.models import model_store
from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.speech.backends import FasterWhisperTranscriber
from percept.speech.openai_backend import OpenAIWhisperTranscriber
from percept.speech.service import SpeechService
from percept.v1 import speech_pb2 as sp
from percept.v1 import speech_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from speech_audio import pcm16k, speak, wav_bytes

RATE = 16_000
CHUNK_S = 0.1
HOLD_S = 2.0  # a stream "holds" while every final comes within this of speech end
SENTENCES = (
    "Hello, I am calling about your new laptops.",
    "I would like to purchase two laptops for my office.",
    "My budget is two thousand dollars.",
    "Can we schedule a demo next week?",
    "Please call me back tomorrow afternoon.",
)


def make_call(folder: Path) -> npt.NDArray[np.int16]:
    gap = np.zeros(int(1.2 * RATE), np.int16)
    parts = [
        part
        for i, text in enumerate(SENTENCES)
        for part in (pcm16k(speak(text, folder / f"{i}.wav")), gap)
    ]
    return np.concatenate(parts)


def timed(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def stream_call(
    stub: speech_pb2_grpc.SpeechAsyncStub, pcm: np.ndarray, interim: bool = True
) -> list[float]:
    """Delays (s) from each utterance's end of speech to its FINAL, at real-time pace."""
    config = sp.RecognitionConfig(
        encoding=sp.AUDIO_ENCODING_LINEAR16, sample_rate_hz=RATE, interim_results=interim
    )
    step = int(CHUNK_S * RATE)
    start = time.perf_counter()

    async def requests() -> AsyncIterator[sp.StreamingRecognizeRequest]:
        yield sp.StreamingRecognizeRequest(config=config)
        for n, offset in enumerate(range(0, len(pcm), step)):
            await asyncio.sleep(max(0.0, start + (n + 1) * CHUNK_S - time.perf_counter()))
            yield sp.StreamingRecognizeRequest(audio_content=pcm[offset : offset + step].tobytes())

    delays = []
    async for event in stub.StreamingRecognize(requests()):
        if event.type != sp.RecognitionEvent.EVENT_TYPE_FINAL or not event.words:
            continue
        spoken_until = event.words[-1].end_offset.ToNanoseconds() / 1e9
        # the chunk holding that audio went out when its last sample had been spoken
        sent_at = start + (int(spoken_until / CHUNK_S) + 1) * CHUNK_S
        delays.append(time.perf_counter() - sent_at)
    return delays


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", default="1,2,3,4,5,6")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--real-calls", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--real-streams", default="whisper-tiny.en:1,2,3;whisper-base:1,2")
    parser.add_argument("--accuracy-calls", type=int, default=6, help="section 6's calls (0: none)")
    parser.add_argument(
        "--accuracy-models",
        default="en:whisper-tiny.en,es:whisper-base",
        help="section 6's languages, each with the weights it is decoded with",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pcm = make_call(folder)
        seconds = len(pcm) / RATE
        audio = (pcm / np.float32(32768)).astype(np.float32)
        settings = Settings(
            data_dir=folder / "data",
            speech_port=0,
            speech_gateway=False,  # gRPC only (bench/gateway.py measures the gateway)
            metrics_enabled=False,
            log_level="WARNING",
        )
        model = model_store(settings).resolve(settings.speech_model).path
        print(f"call: {len(SENTENCES)} utterances, {seconds:.1f} s of audio; 2 CPU threads\n")

        # 1. service overhead against the bare backend on the same samples, interleaved
        # so that drift in the machine's speed hits both alike
        bare = FasterWhisperTranscriber(model, device="cpu", cpu_threads=2)
        host = ServiceHost(SpeechService(settings), settings)
        await host.start()
        await host.ready.wait()
        try:
            async with grpc.aio.insecure_channel(host.address) as channel:
                stub = speech_pb2_grpc.SpeechStub(channel)
                request = sp.RecognizeRequest(
                    config=sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_WAV),
                    audio_content=wav_bytes(pcm),
                )
                await stub.Recognize(request)  # warm-up
                bare.transcribe(audio, "en")
                bare_times, service_times = [], []
                for _ in range(args.repeat):
                    begin = time.perf_counter()
                    bare.transcribe(audio, "en")
                    bare_times.append(time.perf_counter() - begin)
                    begin = time.perf_counter()
                    await stub.Recognize(request)
                    service_times.append(time.perf_counter() - begin)
                t_bare = statistics.median(bare_times)
                t_service = statistics.median(service_times)
                reply = await stub.Recognize(request)
                service = host.service
                assert isinstance(service, SpeechService)
                understanding = service.servicer.understanding
                texts = [r.transcript for r in reply.results]
                t_understand = timed(
                    lambda: [(understanding.intents(t), understanding.entities(t)) for t in texts],
                    args.repeat,
                )
                plumbing = t_service - t_bare - t_understand
                print("1. whole recording (Recognize)")
                print(f"   bare backend call      {t_bare:6.3f} s  RTF {t_bare / seconds:.3f}")
                print(
                    f"   service over gRPC      {t_service:6.3f} s  RTF {t_service / seconds:.3f}"
                    f"  {100 * (t_service / t_bare - 1):+.1f} % over the bare call"
                )
                print(
                    f"     of which intents and entities of {len(texts)} utterances "
                    f"{t_understand:.3f} s ({100 * t_understand / t_bare:+.1f} %), plumbing "
                    f"(gRPC, decoding, resampling) {plumbing:.3f} s "
                    f"({100 * plumbing / t_bare:+.1f} %; target <= +10 %)"
                )
                checkpoint = model_store(settings).pull("whisper-tiny.en-openai").file("model.pt")
                reference = OpenAIWhisperTranscriber(checkpoint, device="cpu", cpu_threads=2)
                reference.transcribe(audio, "en")  # warm-up (numba compiles the DTW)
                t_openai = timed(lambda: reference.transcribe(audio, "en"), 2)
                print(
                    f"   openai-whisper         {t_openai:6.3f} s  RTF {t_openai / seconds:.3f}"
                    f"  (same weights, float32 PyTorch; faster-whisper "
                    f"{t_openai / t_bare:.1f}x faster)\n"
                )

                from speech_analytics import analytics_costs

                analytics_costs(settings, understanding, texts, t_bare / len(texts))

                # 2. latency at real-time pace
                for interim in (True, False):
                    delays = await stream_call(stub, pcm, interim)
                    label = "with partials" if interim else "finals only"
                    print(
                        f"2. end of speech -> FINAL, real-time pace, {label}: median "
                        f"{statistics.median(delays):.2f} s, max {max(delays):.2f} s "
                        f"over {len(delays)} utterances (target median <= 1 s)"
                    )
                print()

                # 3. concurrent real-time calls
                print(
                    f"3. concurrent real-time calls with partials (hold: finals within {HOLD_S} s)"
                )
                for n in (int(x) for x in args.streams.split(",")):
                    results = await asyncio.gather(*(stream_call(stub, pcm) for _ in range(n)))
                    delays = [d for r in results for d in r]
                    finals = len(delays)
                    held = finals == n * len(SENTENCES) and max(delays) <= HOLD_S
                    print(
                        f"   {n:2d} calls: finals {finals}/{n * len(SENTENCES)}, delay median "
                        f"{statistics.median(delays):.2f} s, max {max(delays):.2f} s -> "
                        f"{'holds' if held else 'falls behind'}"
                    )
        finally:
            await host.stop(grace=1)
        if args.real_calls:
            from speech_calls import real_calls

            await real_calls(folder, args.real_streams)
        if args.accuracy_calls:
            from speech_accuracy import accuracy

            for plan in args.accuracy_models.split(","):
                language, model = plan.split(":")
                await accuracy(folder, language, model, args.accuracy_calls)


if __name__ == "__main__":
    asyncio.run(main())
