"""How a camera streams to the vision service: at its own pace, or lock-step.

A live camera sends at its frame rate and the service may skip frames (latest
wins). A recorded video, a test or the demo wants every frame analysed: lock-step
sends each frame once the result of the one before has come back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence

from percept.v1 import vision_pb2, vision_pb2_grpc


async def lockstep(
    stub: vision_pb2_grpc.VisionAsyncStub,
    frames: Iterable[vision_pb2.Frame] | AsyncIterable[vision_pb2.Frame],
    metadata: Sequence[tuple[str, str]] = (),
) -> AsyncIterator[vision_pb2.FrameResult]:
    """Every frame's result, each frame sent after the previous one's result."""
    answered: asyncio.Queue[None] = asyncio.Queue()

    async def send() -> AsyncIterator[vision_pb2.Frame]:
        source = frames if isinstance(frames, AsyncIterable) else _aiter(frames)
        first = True
        async for frame in source:
            if not first:
                await answered.get()
            first = False
            yield frame

    async for result in stub.StreamFrames(send(), metadata=tuple(metadata)):
        answered.put_nowait(None)
        yield result


async def _aiter(frames: Iterable[vision_pb2.Frame]) -> AsyncIterator[vision_pb2.Frame]:
    for frame in frames:
        yield frame
