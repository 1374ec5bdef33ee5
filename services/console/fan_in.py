"""One watch over every pod of a service.

A unary call may go to any pod, but a watch stream stays on the pod it reached, and
each speech pod knows only its own calls. So the console resolves the service's
address (the headless Service's name: one record per pod) and opens the watch on
every pod, merging what they say. A pod that goes away ends the merged stream with
its error; the browser reconnects, and the address is resolved again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import grpc

_CLOSING: set[asyncio.Task[None]] = set()  # channels closing in the background
# Messages merged and not yet read. Past this a pod's pump waits, gRPC's flow control
# holds the pod's stream, and the pod cuts off a watcher that fell behind: a browser
# that stopped reading costs the console this much, not every update of every pod.
QUEUED = 256


async def pod_targets(address: str) -> list[str]:
    """`host:port` as one `ip:port` per address it resolves to (one family: a dual-stack
    name would otherwise count each pod twice); an IP address stays as it is."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return [address]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"{address} does not resolve: {exc.strerror}") from exc
    v4 = sorted({str(i[4][0]) for i in infos if i[0] == socket.AF_INET})
    v6 = sorted({str(i[4][0]) for i in infos if i[0] == socket.AF_INET6})
    if v4:
        return [f"{ip}:{port}" for ip in v4]
    return [f"[{ip}]:{port}" for ip in v6] or [address]


class FanIn:
    """The messages of one server stream per pod, as one stream (`async for`, `cancel()`).
    Waiting for the next message may be cancelled (a keepalive timer) without harm."""

    def __init__(
        self,
        address: str,
        credentials: grpc.ChannelCredentials | None,
        open_stream: Callable[[grpc.aio.Channel], Any],
    ) -> None:
        self.address, self.credentials, self.open_stream = address, credentials, open_stream
        self.channels: list[grpc.aio.Channel] = []
        self.streams: list[Any] = []
        self.pumps: list[asyncio.Task[None]] = []
        self.queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue(QUEUED)
        self.started = False

    def _channel(self, target: str) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(target)
        host = self.address.rpartition(":")[0].strip("[]")  # the name the certificate has
        options = [("grpc.ssl_target_name_override", host)]
        return grpc.aio.secure_channel(target, self.credentials, options=options)

    async def _start(self) -> list[Any]:
        if self.started:
            return self.streams
        targets = await pod_targets(self.address)  # may fail: then the next call tries again
        self.started = True
        for target in targets:
            channel = self._channel(target)
            self.channels.append(channel)
            self.streams.append(self.open_stream(channel))
        self.pumps = [asyncio.create_task(self._pump(stream)) for stream in self.streams]
        return self.streams

    async def _pump(self, stream: Any) -> None:
        try:
            async for message in stream:
                await self.queue.put((message, None))
            await self.queue.put((None, StopAsyncIteration()))
        except grpc.aio.AioRpcError as exc:
            await self.queue.put((None, exc))
        finally:
            stream.cancel()

    async def initial_metadata(self) -> None:
        """Returns once every pod's headers came (each pod watches), like a gRPC call's."""
        await asyncio.gather(*(stream.initial_metadata() for stream in await self._start()))

    def __aiter__(self) -> FanIn:
        return self

    async def __anext__(self) -> Any:
        await self._start()
        message, error = await self.queue.get()
        if error is not None:  # one pod ended or failed: so does the merged view
            raise error
        return message

    def cancel(self) -> None:
        for task in self.pumps:
            task.cancel()
        for channel in self.channels:
            closing = asyncio.get_running_loop().create_task(channel.close())
            _CLOSING.add(closing)
            closing.add_done_callback(_CLOSING.discard)
        self.pumps, self.channels, self.streams = [], [], []
