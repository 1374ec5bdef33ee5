"""One live call: bytes in, events of every channel out.

The decoder turns the call's chunks into 16 kHz samples: the channels' mix, or
one row per channel when the config asks for separate recognition. Each channel
has its own ChannelRecognizer; the channels of a chunk are processed
concurrently, so their drafts meet in the engine's batches and one channel's
final does not hold back the other's end of utterance.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from percept.speech.audio import Samples
from percept.speech.endpointing import Endpointer
from percept.speech.engine import SpeechEngine
from percept.speech.stream_audio import StreamDecoder
from percept.speech.streaming import (
    UNSPECIFIED,
    ChannelRecognizer,
    Events,
    FinalBuilder,
    StreamOptions,
)
from percept.v1 import speech_pb2

_DONE = object()


async def interleave(streams: Sequence[Events]) -> Events:
    """The events of several streams as they come; an error in one ends all."""
    if len(streams) == 1:
        async for event in streams[0]:
            yield event
        return
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def drain(stream: Events) -> None:
        try:
            async for event in stream:
                await queue.put(event)
        except BaseException as exc:  # handed to the reader, who raises it
            await queue.put(exc)
        finally:
            await queue.put(_DONE)

    tasks = [asyncio.create_task(drain(s)) for s in streams]
    try:
        running = len(tasks)
        while running:
            item = await queue.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                assert isinstance(item, speech_pb2.RecognitionEvent)
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class CallSession:
    def __init__(
        self,
        engine: SpeechEngine,
        decoder: StreamDecoder,
        options: StreamOptions,
        build_final: FinalBuilder,
        *,
        roles: Sequence[int] = (),
        separate_channels: bool = False,
        endpointer: Endpointer | None = None,
    ) -> None:
        self.engine, self.decoder, self.options = engine, decoder, options
        self.build_final, self.roles = build_final, list(roles)
        self.separate = separate_channels
        self.channels: list[ChannelRecognizer] = []
        if not separate_channels:  # the mix (or the mono stream) is channel 0
            self.channels = [self._recognizer(0, endpointer)]

    def _recognizer(self, channel: int, endpointer: Endpointer | None = None) -> ChannelRecognizer:
        role = self.roles[channel] if channel < len(self.roles) else UNSPECIFIED
        return ChannelRecognizer(
            self.engine,
            self.options,
            self.build_final,
            channel=channel,
            role=role,
            endpointer=endpointer,
        )

    @property
    def received_s(self) -> float:
        return max((c.received_s for c in self.channels), default=0.0)

    def feed(self, data: bytes) -> Events:
        return self._route(self.decoder.feed(data))

    async def finish(self) -> Events:
        async for event in self._route(self.decoder.finish()):
            yield event
        async for event in interleave([c.finish() for c in self.channels]):
            yield event

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        self.decoder.close()

    def _route(self, samples: Samples) -> Events:
        if not self.separate:
            return self.channels[0].push(samples)
        if samples.ndim == 1:  # a WAV header still on its way: no channels yet
            return _nothing()
        while len(self.channels) < samples.shape[0]:  # known once the audio starts
            self.channels.append(self._recognizer(len(self.channels)))
        return interleave([c.push(row) for c, row in zip(self.channels, samples, strict=True)])


async def _nothing() -> AsyncIterator[speech_pb2.RecognitionEvent]:
    return
    yield
