"""A chat goes on across an nlp restart (sessions in SQLite), and ends after its TTL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest
from conftest import HostFactory

from percept.nlp.service import NlpService
from percept.runtime.settings import Settings
from percept.v1 import nlp_pb2, nlp_pb2_grpc

pytestmark = pytest.mark.slow


async def test_a_chat_survives_a_restart_and_expires_when_idle(
    make_settings: Callable[..., Settings], start_host: HostFactory
) -> None:
    first = make_settings(leads_address="127.0.0.1:9")  # leads down: signals wait in the outbox
    host = await start_host(NlpService(first), first)
    await asyncio.wait_for(host.ready.wait(), 180)
    async with grpc.aio.insecure_channel(host.address) as channel:
        stub = nlp_pb2_grpc.NlpStub(channel)
        reply = await stub.Chat(nlp_pb2.ChatTurn(text="We want to buy twenty tablets."))
    await host.stop(grace=1)

    second = make_settings(leads_address="127.0.0.1:9", nlp_session_ttl_s=1.0)
    host = await start_host(NlpService(second), second)
    await asyncio.wait_for(host.ready.wait(), 180)
    async with grpc.aio.insecure_channel(host.address) as channel:
        stub = nlp_pb2_grpc.NlpStub(channel)
        after = await stub.Chat(nlp_pb2.ChatTurn(session_id=reply.session_id, text="next week"))
        known = {s.name: s.value for s in after.qualification if s.filled}
        assert known == {
            "product": "tablet",
            "quantity": "20",
            "need": "buy twenty tablets",
            "timeline": "next week",
        }
        await asyncio.sleep(1.5)  # this host's TTL is 1 s
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.Chat(nlp_pb2.ChatTurn(session_id=reply.session_id, text="hello?"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert f"session {reply.session_id!r} expired after 1 s without a message" in (
        error.value.details() or ""
    )
