"""The console watches calls on every speech pod: two speech servers (two pods behind one
headless Service name), a call on each, and one merged watch sees both."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import grpc
import pytest
from conftest import HostFactory

from percept.console import fan_in
from percept.console.fan_in import FanIn, pod_targets
from percept.runtime.settings import Settings
from percept.speech.service import SpeechService
from percept.v1 import speech_pb2 as sp
from percept.v1 import speech_pb2_grpc

pytestmark = pytest.mark.slow


async def test_ip_addresses_stay_and_names_resolve_to_one_family() -> None:
    assert await pod_targets("10.0.0.7:50051") == ["10.0.0.7:50051"]
    assert await pod_targets("[::1]:50051") == ["[::1]:50051"]
    assert await pod_targets("localhost:50051") == ["127.0.0.1:50051"]


async def test_one_watch_sees_the_calls_of_every_pod(
    make_settings: Callable[..., Settings],
    start_host: HostFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pods = []
    for _ in range(2):
        settings = make_settings()
        service = SpeechService(settings)
        host = await start_host(service, settings)
        await asyncio.wait_for(host.ready.wait(), 120)
        pods.append((service, host))

    async def resolve(address: str) -> list[str]:
        assert address == "percept-speech-headless:50051"
        return [host.address for _, host in pods]

    monkeypatch.setattr(fan_in, "pod_targets", resolve)
    where = sp.WatchCallsRequest()
    watch = FanIn(
        "percept-speech-headless:50051",
        None,
        lambda channel: speech_pb2_grpc.SpeechStub(channel).WatchCalls(where),
    )
    seen: list[str] = []

    async def follow() -> None:
        async for update in watch:
            if update.type == sp.CallUpdate.UPDATE_TYPE_STARTED:
                seen.append(update.call.call_id)
                if len(seen) == 2:
                    return

    await asyncio.wait_for(watch.initial_metadata(), 30)  # every pod watches
    following = asyncio.create_task(follow())
    from websockets.asyncio.client import connect

    for n, (service, _) in enumerate(pods):
        assert service.gateway is not None
        async with connect(f"ws://127.0.0.1:{service.gateway.port}/twilio") as ws:
            start = {"callSid": f"CA-pod-{n}", "tracks": ["inbound"]}
            await ws.send(json.dumps({"event": "start", "start": start}))
            await ws.send(json.dumps({"event": "stop", "stop": {}}))
            await asyncio.wait_for(ws.wait_closed(), 30)
    await asyncio.wait_for(following, 30)
    assert sorted(seen) == ["CA-pod-0", "CA-pod-1"]
    watch.cancel()
    # a pod that goes away ends the merged view with its error (the browser reconnects)
    again = FanIn(
        "percept-speech-headless:50051",
        None,
        lambda channel: speech_pb2_grpc.SpeechStub(channel).WatchCalls(where),
    )
    await pods[1][1].stop(grace=0)
    with pytest.raises(grpc.aio.AioRpcError):
        async with asyncio.timeout(30):
            async for _ in again:
                pass
    again.cancel()


async def test_a_name_that_does_not_resolve_ends_the_event_stream_with_gone() -> None:
    """The console's calls view, with the speech address mistyped: a `gone` event saying
    why (the page shows it and retries), not a broken response."""
    from starlette.responses import StreamingResponse

    from percept.console.gateway import _event_stream

    where = sp.WatchCallsRequest()
    watch = FanIn(
        "no-such-pod.invalid:50051",
        None,
        lambda channel: speech_pb2_grpc.SpeechStub(channel).WatchCalls(where),
    )
    response = await _event_stream(watch, "call", lambda m: {}, "watching calls")
    assert isinstance(response, StreamingResponse)
    chunks = [str(c) async for c in response.body_iterator]
    assert chunks[0].startswith("retry: 2000")
    assert chunks[-1].startswith("event: gone\n")
    assert "no-such-pod.invalid:50051 does not resolve" in chunks[-1]


class EndlessStream:
    """A pod's watch that always has another update."""

    def __init__(self) -> None:
        self.sent = 0

    def __aiter__(self) -> EndlessStream:
        return self

    async def __anext__(self) -> int:
        self.sent += 1
        await asyncio.sleep(0)
        return self.sent

    def cancel(self) -> None:
        pass


async def test_a_reader_that_stopped_holds_a_bounded_queue_not_every_update() -> None:
    """A sleeping laptop stops reading: the pods' pumps wait, and their streams with
    them (gRPC flow control; a pod then cuts the watcher off), instead of queueing."""
    pod = EndlessStream()
    merged = FanIn("127.0.0.1:9", None, lambda channel: pod)  # an IP address: one pod
    assert await merged.__anext__() == 1
    async with asyncio.timeout(10):
        while merged.queue.qsize() < fan_in.QUEUED:  # noqa: ASYNC110 - filled by the pump
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # a pump that did not wait would run on meanwhile
    assert merged.queue.qsize() == fan_in.QUEUED
    assert pod.sent == 1 + fan_in.QUEUED + 1  # the one read, the queue, one in the pump's hand
    merged.cancel()
