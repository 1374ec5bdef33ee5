"""One telephone call as a gateway carries it: tracks in, events to the board and to leads.

Every protocol delivers a call as tracks of one participant each (Twilio's
inbound and outbound, AudioHook's external and internal channels, one
AudioSocket connection each). A track has its own decoder and recognizer and
its own worker, so one side's final never holds back the other side's audio;
the frames of a track wait in a queue the socket reader fills in order, and
the reader waits once a track is BACKLOG_S of audio behind (memory stays
bounded whatever the peer sends). Silence put in for lost audio is bounded by
the wall clock: a track never gets ahead of the time the call has lasted.
A track whose worker fails is closed: the call fails with it. Events go
through the servicer's `deliver`, exactly as a StreamingRecognize stream's
do: watchers hear them, the customer's finals become signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from percept.speech.audio import AudioError
from percept.speech.gateway.errors import BAD_DATA, INTERNAL, POLICY, ProtocolError
from percept.speech.live_calls import LiveCall
from percept.speech.stream_audio import PcmStreamDecoder
from percept.speech.streaming import ChannelRecognizer, StreamOptions
from percept.v1 import speech_pb2

if TYPE_CHECKING:
    from percept.speech.servicer import SpeechServicer

log = logging.getLogger("percept.speech.gateway")
BACKLOG_S = 60.0  # audio a track may be behind before its socket reader waits
CLOCK_SLACK_S = 5.0  # how far a track's audio may run ahead of the wall clock when filled
SILENCE_PIECE_S = 1.0  # lost audio is put in as silence this much at a time
_PAUSE = object()
_END = object()


@dataclass
class Track:
    name: str
    channel: int
    decoder: PcmStreamDecoder
    recognizer: ChannelRecognizer
    bytes_per_s: int
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    worker: asyncio.Task[None] | None = None
    backlog: int = 0  # bytes queued, not yet recognised
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    received_s: float = 0.0  # audio this track has had, silence put in included
    closed: bool = False  # its worker is done: nothing more is taken

    async def put(self, item: object) -> None:
        """Queues `item` for the worker, waiting while the track is far behind; nothing
        once the track is closed."""
        if isinstance(item, bytes):
            while not self.closed and self.backlog > BACKLOG_S * self.bytes_per_s:
                self.drained.clear()
                await self.drained.wait()
        if self.closed:
            return
        if isinstance(item, bytes):
            self.backlog += len(item)
            self.received_s += len(item) / self.bytes_per_s
        self.queue.put_nowait(item)

    def taken(self, item: object) -> None:
        if isinstance(item, bytes):
            self.backlog -= len(item)
            self.drained.set()

    def close(self) -> None:
        """The worker is done: nothing queued will be heard, and no reader waits on it."""
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.backlog = 0
        self.drained.set()


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
        self.started = time.monotonic()

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
        if self.ended:
            raise ProtocolError(POLICY, "the call has ended")
        if name in self.tracks:
            raise ProtocolError(POLICY, f"the {name} track has started already")
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
        decoder = PcmStreamDecoder(rate, 1, law=law)
        track = Track(name, channel, decoder, recognizer, rate * (1 if law else 2))
        self.tracks[name] = track
        track.worker = asyncio.create_task(self._run(track), name=f"call-track-{name}")
        return track

    def _check(self) -> None:
        if self.failed is not None:
            if isinstance(self.failed, AudioError):
                raise ProtocolError(BAD_DATA, str(self.failed))
            raise ProtocolError(INTERNAL, "recognition failed; the call cannot go on")

    async def feed(self, name: str, data: bytes) -> None:
        """Queues a frame of one track (waiting while the track is far behind); dropped
        while the call is paused. ProtocolError once a track has failed."""
        if self.paused or self.ended:
            return
        self._check()
        await self.tracks[name].put(data)

    def silence_due(self, name: str, seconds: float) -> float:
        """How much of `seconds` of lost audio may be put in as silence: no more than
        keeps the track within the wall-clock time the call has lasted."""
        track = self.tracks[name]
        lasted = time.monotonic() - self.started + CLOCK_SLACK_S
        return max(0.0, min(seconds, lasted - track.received_s))

    async def feed_silence(self, name: str, seconds: float, code: bytes) -> None:
        """Lost audio (a hole in the stamps, a pause) as silence of `code` (one sample's
        byte), as much as `silence_due` allows, a second at a time: the track's backlog
        bound is checked before each piece, so minutes of silence never queue at once."""
        due = self.silence_due(name, seconds)
        rate = self.tracks[name].bytes_per_s // len(code)
        while due > 0:
            piece = min(due, SILENCE_PIECE_S)
            await self.feed(name, code * int(piece * rate))
            due -= piece

    async def pause(self) -> None:
        """Audio stops being heard: what each side was saying is finalised now, and
        nothing arriving until `resume` is recognised or kept."""
        if self.paused or self.ended:
            return
        self.paused = True
        for track in list(self.tracks.values()):
            await track.put(_PAUSE)
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
        await track.put(_END)
        await asyncio.gather(track.worker, return_exceptions=True)

    async def end(self, reason: str) -> None:
        """The call is over (or its socket dropped): each track's last utterance
        still becomes a final, with its signals, before the call leaves the board."""
        if self.ended:
            return
        self.ended = True
        tracks = list(self.tracks.values())
        try:
            for track in tracks:
                await track.put(_END)
            await asyncio.gather(*(t.worker for t in tracks if t.worker), return_exceptions=True)
        finally:
            for track in tracks:
                track.recognizer.close()
            failed = self.failed is not None and reason == "completed"
            self.reason = self.reason or ("error" if failed else reason)
            self.servicer.end_call(self.config, self.live, self.reason, self.heard_s)

    async def cancel(self) -> None:
        """Stops at once, without finals (the server is stopping past its grace)."""
        if self.ended and self.reason:
            return
        self.ended, self.reason = True, "shutdown"
        tracks = list(self.tracks.values())
        for track in tracks:
            if track.worker is not None:
                track.worker.cancel()
        for track in tracks:
            if track.worker is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await track.worker
            track.recognizer.close()
        self.servicer.end_call(self.config, self.live, self.reason, self.heard_s)

    @property
    def heard_s(self) -> float:
        """The call's length as heard: its longest track."""
        return max((t.received_s for t in self.tracks.values()), default=0.0)

    def _emit(self, event: speech_pb2.RecognitionEvent) -> None:
        self.servicer.deliver(self.config, self.live, event)
        if self.on_event is not None:
            self.on_event(event)

    async def _run(self, track: Track) -> None:
        recognizer = track.recognizer
        marker: object = None  # a pause or end met while gathering audio
        try:
            while True:
                item = marker or await track.queue.get()
                marker = None
                if isinstance(item, bytes):
                    # What has queued up meanwhile is heard in one push: a track that
                    # fell behind catches up in fewer, larger steps (20 ms frames each
                    # alone cost a recognizer step apiece).
                    frames = [item]
                    while not track.queue.empty():
                        more = track.queue.get_nowait()
                        if not isinstance(more, bytes):
                            marker = more
                            break
                        frames.append(more)
                    audio = b"".join(frames)
                    track.taken(audio)
                    async for event in recognizer.push(track.decoder.feed(audio)):
                        self._emit(event)
                    continue
                if item is _END:
                    break
                async for event in recognizer.finish():  # a pause: the words so far are final
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
        finally:
            track.close()
