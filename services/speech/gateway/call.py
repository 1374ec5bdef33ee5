"""One telephone call as a gateway carries it: tracks in, events to the board and to leads.

Every protocol delivers a call as tracks of one participant each (Twilio's
inbound and outbound, AudioHook's external and internal channels, one
AudioSocket connection each). A track has its own decoder and recognizer and
its own worker, so one side's final never holds back the other side's audio;
the frames of a track wait in a queue the socket reader fills in order.
Events go through the servicer's `deliver`, exactly as a StreamingRecognize
stream's do: watchers hear them, the customer's finals become signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from percept.speech.audio import AudioError
from percept.speech.live_calls import LiveCall
from percept.speech.stream_audio import PcmStreamDecoder
from percept.speech.streaming import ChannelRecognizer, StreamOptions
from percept.v1 import speech_pb2

if TYPE_CHECKING:
    from percept.speech.servicer import SpeechServicer

log = logging.getLogger("percept.speech.gateway")
QUEUED_FRAMES = 3000  # a minute of 20 ms frames a track may be behind before the socket waits
_PAUSE = object()
_END = object()


@dataclass
class Track:
    name: str
    channel: int
    decoder: PcmStreamDecoder
    recognizer: ChannelRecognizer
    queue: asyncio.Queue[object] = field(default_factory=lambda: asyncio.Queue(QUEUED_FRAMES))
    worker: asyncio.Task[None] | None = None


class GatewayCall:
    """The tracks of one call, its recognition config and its place on the board."""

    def __init__(
        self,
        servicer: SpeechServicer,
        config: speech_pb2.RecognitionConfig,
        source: str,
        tracks: Sequence[tuple[str, int]] = (),
        *,
        on_event: Callable[[speech_pb2.RecognitionEvent], None] | None = None,
    ) -> None:
        """`config` says who calls (call id, caller, campaign, language); it must have
        passed `servicer.check_config`. `tracks` are the participants known from the
        start, (name, role) in channel order: watchers see them from the call's start.
        The call is on the board from here."""
        assert servicer.engine is not None
        self.servicer, self.engine = servicer, servicer.engine
        self.options: StreamOptions = servicer.options(config)
        config.separate_channel_recognition = True
        self.channels: dict[str, tuple[int, int]] = {}  # name -> (channel, role)
        for name, role in tracks:
            self._declare(config, name, role)
        self.config = config
        self.live: LiveCall = servicer.begin_call(config, source)
        self.on_event = on_event
        self.tracks: dict[str, Track] = {}
        self.paused = False
        self.failed: BaseException | None = None
        self.ended = False
        self.reason = ""  # how it ended: completed, dropped, error, shutdown

    def _declare(self, config: speech_pb2.RecognitionConfig, name: str, role: int) -> int:
        channel = len(self.channels)
        self.channels[name] = (channel, role)
        config.channel_roles.append(role)  # type: ignore[arg-type]
        return channel

    @property
    def call_id(self) -> str:
        return self.live.info.call_id

    def add_track(self, name: str, role: int, *, rate: int, law: str | None) -> Track:
        """A participant's audio starts: G.711 (`law` "mulaw"/"alaw") or 16-bit PCM at
        `rate`. A participant not declared at the start gets the next channel."""
        if name in self.channels:
            channel, role = self.channels[name]
        else:
            channel = self._declare(self.config, name, role)
            self.live.info.channel_roles.append(role)  # type: ignore[arg-type]
        recognizer = ChannelRecognizer(
            self.engine,
            self.options,
            self.servicer.final_event,
            channel=channel,
            role=role,
        )
        track = Track(name, channel, PcmStreamDecoder(rate, 1, law=law), recognizer)
        self.tracks[name] = track
        track.worker = asyncio.create_task(self._run(track), name=f"call-track-{name}")
        return track

    async def feed(self, name: str, data: bytes) -> None:
        """Queues a frame of one track; dropped while the call is paused."""
        if self.paused or self.ended:
            return
        if self.failed is not None:
            raise self.failed
        await self.tracks[name].queue.put(data)

    async def pause(self) -> None:
        """Audio stops being heard: what each side was saying is finalised now, and
        nothing arriving until `resume` is recognised or kept."""
        if self.paused:
            return
        self.paused = True
        for track in self.tracks.values():
            await track.queue.put(_PAUSE)
        self.live.paused(True)

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self.live.paused(False)

    def set_language(self, code: str) -> None:
        """What is said from now on is in `code` (BCP-47; empty or "auto" detects it).
        Raises AudioError when the model does not speak it."""
        config = speech_pb2.RecognitionConfig()
        config.CopyFrom(self.config)
        config.language_code = code
        self.servicer.check_config(config)
        self.config.language_code = code
        language = self.servicer.options(config).language
        self.options = dataclasses.replace(self.options, language=language)
        for track in self.tracks.values():
            track.recognizer.vote.fixed = language

    async def end_track(self, name: str) -> None:
        """One participant has left (its own connection ended): its last words are
        final now, while the others go on."""
        track = self.tracks.get(name)
        if track is None or track.worker is None or self.ended:
            return
        await track.queue.put(_END)
        await asyncio.gather(track.worker, return_exceptions=True)

    async def end(self, reason: str) -> None:
        """The call is over (or its socket dropped): each track's last utterance
        still becomes a final, with its signals, before the call leaves the board."""
        if self.ended:
            return
        self.ended = True
        for track in self.tracks.values():
            await track.queue.put(_END)
        workers = [t.worker for t in self.tracks.values() if t.worker is not None]
        try:
            await asyncio.gather(*workers, return_exceptions=True)
        finally:
            for track in self.tracks.values():
                track.recognizer.close()
            self.reason = "error" if self.failed is not None and reason == "completed" else reason
            self.live.end(self.reason)

    async def cancel(self) -> None:
        """Stops at once, without finals (the server is stopping past its grace)."""
        if self.ended and self.reason:
            return
        self.ended, self.reason = True, "shutdown"
        for track in self.tracks.values():
            if track.worker is not None:
                track.worker.cancel()
        for track in self.tracks.values():
            if track.worker is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await track.worker
            track.recognizer.close()
        self.live.end(self.reason)

    def _emit(self, event: speech_pb2.RecognitionEvent) -> None:
        self.servicer.deliver(self.config, self.live, event)
        if self.on_event is not None:
            self.on_event(event)

    async def _run(self, track: Track) -> None:
        recognizer = track.recognizer
        try:
            while True:
                item = await track.queue.get()
                if item is _END:
                    break
                if item is _PAUSE:
                    async for event in recognizer.finish():
                        self._emit(event)
                    continue
                assert isinstance(item, bytes)
                async for event in recognizer.push(track.decoder.feed(item)):
                    self._emit(event)
            async for event in recognizer.push(track.decoder.finish()):
                self._emit(event)
            async for event in recognizer.finish():
                self._emit(event)
        except AudioError as exc:
            self.failed = exc
        except Exception as exc:  # the engine failed: the call ends, the server goes on
            self.failed = exc
            log.exception(
                "a call's track failed", extra={"call_id": self.call_id, "track": track.name}
            )
