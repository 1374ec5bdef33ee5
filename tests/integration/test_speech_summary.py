"""A call's summary against the call's known timeline: real telephone prompts placed
on an agent and a customer channel at chosen times, with long and short pauses and
two turns where the customer barges in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
import real_media
from conftest import HostFactory

from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.speech.service import SpeechService
from percept.v1 import speech_pb2 as sp
from percept.v1 import speech_pb2_grpc

pytestmark = pytest.mark.slow
RATE = 8000
AGENT, CUSTOMER = sp.CHANNEL_ROLE_AGENT, sp.CHANNEL_ROLE_CUSTOMER


@dataclass(frozen=True)
class Placed:
    role: int
    start: float  # where the clip's speech starts in the call
    end: float


def speech_bounds(pcm: np.ndarray) -> tuple[int, int]:
    """Where a clip's voice starts and ends: 10 ms frames above -40 dBFS."""
    frames = pcm[: len(pcm) // 80 * 80].astype(np.float32).reshape(-1, 80) / 32768
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > 0.01)
    return int(loud[0]) * 80, (int(loud[-1]) + 1) * 80


def build_call() -> tuple[np.ndarray, list[Placed], float]:
    """(stereo int16 samples, the speech timeline, the call's length). Turns alternate;
    the gap before each turn is in seconds, negative where the customer starts while
    the agent still speaks."""
    clips = real_media.prompts("en")[10:18]
    gaps = [0.8, 0.7, 3.0, -1.0, 0.9, 2.5, 0.6, -0.8]  # before each turn
    roles = [AGENT, CUSTOMER] * 4
    timeline: list[Placed] = []
    pieces: list[tuple[int, int, np.ndarray]] = []  # (channel, at sample, clip)
    cursor = 0.0  # where the last speech ended
    for clip, gap, role in zip(clips, gaps, roles, strict=True):
        first, last = speech_bounds(clip.pcm)
        voice = clip.pcm[first:last]
        start = cursor + gap if timeline else 1.0
        at = round(start * RATE)
        pieces.append((0 if role == AGENT else 1, at, voice))
        timeline.append(Placed(role, at / RATE, (at + len(voice)) / RATE))
        cursor = timeline[-1].end
    length = cursor + 4.0  # a silence at the end, as the caller waits
    stereo = np.zeros((round(length * RATE), 2), np.int16)
    rng = np.random.default_rng(0)
    stereo += rng.normal(0, 12, stereo.shape).astype(np.int16)  # a quiet line
    for channel, at, voice in pieces:
        stereo[at : at + len(voice), channel] += voice
    return stereo, timeline, length


async def test_the_summary_matches_the_calls_timeline(
    make_settings: Callable[..., Settings],
    start_host: HostFactory,
    channel_to: Callable[[ServiceHost], grpc.aio.Channel],
) -> None:
    settings = make_settings(leads_address="127.0.0.1:9")
    speech = await start_host(SpeechService(settings), settings)
    await asyncio.wait_for(speech.ready.wait(), 120)
    stereo, timeline, length = build_call()
    config = sp.RecognitionConfig(
        encoding=sp.AUDIO_ENCODING_LINEAR16,
        sample_rate_hz=RATE,
        audio_channel_count=2,
        separate_channel_recognition=True,
        channel_roles=[AGENT, CUSTOMER],
        interim_results=False,
    )
    audio = stereo.reshape(-1).astype("<i2").tobytes()
    chunk = RATE // 10 * 4  # 100 ms of 16-bit stereo
    requests = [sp.StreamingRecognizeRequest(config=config)] + [
        sp.StreamingRecognizeRequest(audio_content=audio[i : i + chunk])
        for i in range(0, len(audio), chunk)
    ]
    stub = speech_pb2_grpc.SpeechStub(channel_to(speech))
    events = [e async for e in stub.StreamingRecognize(iter(requests))]
    assert events[-1].type == sp.RecognitionEvent.EVENT_TYPE_CALL_SUMMARY
    summary = events[-1].summary

    def seconds(d: object) -> float:
        return d.ToNanoseconds() / 1e9  # type: ignore[attr-defined, no-any-return]

    assert seconds(summary.duration) == pytest.approx(length, abs=0.05)
    sides = {r.role: r for r in summary.roles}
    assert set(sides) == {AGENT, CUSTOMER}
    for role, side in sides.items():
        known = sum(p.end - p.start for p in timeline if p.role == role)
        assert seconds(side.talk_time) == pytest.approx(known, abs=0.3), (role, known)
        assert side.utterances == 4
        assert 80 < side.words_per_minute < 260
    # the customer started twice while the agent spoke; the agent never cut in
    assert sides[CUSTOMER].interruptions == 2
    assert sides[AGENT].interruptions == 0
    assert summary.interruptions == 2
    # silences of 2 s or more: the 1 s before anyone speaks is not one; the 3 s and
    # 2.5 s pauses and the 4 s at the end are
    spoken = sorted(timeline, key=lambda p: p.start)
    gaps, reached = [], 0.0
    for p in spoken:
        gaps.append(p.start - reached)
        reached = max(reached, p.end)
    gaps.append(length - reached)
    long = [g for g in gaps if g >= 2.0]
    assert summary.silences == len(long) == 3
    assert seconds(summary.non_talk_time) == pytest.approx(sum(long), abs=0.3)
