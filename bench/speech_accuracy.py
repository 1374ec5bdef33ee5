"""Accuracy on real calls for bench/speech.py (section 6): the #17 contract.

Mono 8 kHz calls of 25 real telephone prompts (tests/real_media.py), one per
seed and language (English with tiny.en, Spanish with multilingual base),
streamed through StreamingRecognize; their finals' WER against the bare model
decoding the whole recording with stock settings (same weights, same run).

A second baseline says how much one call's figure can move at all: the bare
model on the same call started a little later (a quiet line before it). That
moves its 30 s windows, nothing else, yet its WER on a call of ~190 words moves
by a word or two: the spread any per-call comparison has to be read against.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import grpc
import real_media

from percept.speech.audio import decode_raw
from percept.v1 import speech_pb2 as sp
from percept.v1 import speech_pb2_grpc

PROMPTS = 25
LATER_S = 0.7  # the shifted baseline's quiet line before the call
TOLERANCE = 0.01


async def accuracy(folder: Path, language: str, model: str, seeds: int) -> None:
    from speech_calls import serve

    print(
        f"\n6. accuracy on real calls: {seeds} mono 8 kHz calls of {PROMPTS} {language} "
        f"prompts, {model}"
    )
    host = await serve(folder, model)
    try:

        def alone(call: real_media.Call) -> str:
            audio = decode_raw(call.pcm.tobytes(), call.rate, 1, None)
            return real_media.bare_transcript(host.settings, audio, language)

        gaps, spreads = [], []
        async with grpc.aio.insecure_channel(host.address) as channel:
            stub = speech_pb2_grpc.SpeechStub(channel)
            for seed in range(seeds):
                call = real_media.telephone_call(language, PROMPTS, seed=seed)
                config = sp.RecognitionConfig(
                    encoding=sp.AUDIO_ENCODING_LINEAR16,
                    sample_rate_hz=call.rate,
                    language_code=language,
                )
                finals = await real_media.streamed_finals(stub, config, call.pcm.tobytes())
                streamed = " ".join(f.transcript for f in finals)
                ours = real_media.wer(call.text, streamed, language)
                theirs = real_media.wer(call.text, alone(call), language)
                later = real_media.wer(
                    call.text, alone(real_media.later(call, LATER_S, seed=seed)), language
                )
                gaps.append(ours - theirs)
                spreads.append(later - theirs)
                print(
                    f"   seed {seed:2d}: {len(call.text.split())} words, WER streamed {ours:.4f}, "
                    f"bare {theirs:.4f} ({ours - theirs:+.4f}); bare {LATER_S} s later "
                    f"{later:.4f} ({later - theirs:+.4f})"
                )
    finally:
        await host.stop(grace=1)

    def summary(values: list[float]) -> str:
        within = sum(v <= TOLERANCE + 1e-9 for v in values)
        return (
            f"mean {statistics.mean(values):+.4f}, max {max(values):+.4f}, "
            f"within {TOLERANCE} of bare on {within}/{len(values)} calls"
        )

    print(f"   streamed:               {summary(gaps)}")
    print(f"   bare, {LATER_S} s later:      {summary(spreads)}")
