"""`percept translate` and `percept chat`: the nlp service from the terminal."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import grpc
import typer
from google.protobuf.json_format import MessageToDict
from rich.table import Table

from percept.cli.common import console, fail, served, settings_or_exit
from percept.runtime.clients import bearer_of
from percept.v1 import nlp_pb2, nlp_pb2_grpc

SERVER_HELP = "nlp server host:port; without it a server runs in this process"


def translate_command(
    texts: Annotated[list[str], typer.Argument(help="one or more texts")],
    to: Annotated[str, typer.Option("--to", help="target language (ISO 639-1)")],
    source: Annotated[str, typer.Option("--from", help="source language, or auto")] = "auto",
    server: Annotated[str | None, typer.Option(help=SERVER_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per text")] = False,
) -> None:
    """Translate TEXTS (Apertium offline; pivots through another language when needed)."""
    settings = settings_or_exit()

    async def run() -> nlp_pb2.TranslateResponse:
        from percept.nlp.service import NlpService

        async with (
            served(server, NlpService, settings) as address,
            grpc.aio.insecure_channel(address) as channel,
        ):
            request = nlp_pb2.TranslateRequest(
                texts=texts, source_language=source, target_language=to
            )
            reply: nlp_pb2.TranslateResponse = await nlp_pb2_grpc.NlpStub(channel).Translate(
                request, metadata=bearer_of(settings.api_keys)
            )
            return reply

    try:
        reply = asyncio.run(run())
    except grpc.aio.AioRpcError as exc:
        fail(f"nlp service: {exc.code().name}: {exc.details()}")
    for done in reply.translations:
        if as_json:
            typer.echo(json.dumps(MessageToDict(done), ensure_ascii=False))
            continue
        via = f" via {done.pivot_language}" if done.pivot_language else ""
        console.print(done.text, highlight=False)
        console.print(
            f"[dim]{done.source_language or '?'} -> {to} ({done.backend or 'unchanged'}{via})[/]"
        )


def _slots_table(reply: nlp_pb2.ChatReply) -> Table:
    table = Table(box=None, show_header=False, padding=(0, 1))
    for slot in reply.qualification:
        value = slot.value if slot.filled else "[dim]-[/]"
        table.add_row(f"[dim]{slot.name}[/]", value)
    return table


def chat_command(
    server: Annotated[str | None, typer.Option(help=SERVER_HELP)] = None,
    language: Annotated[str, typer.Option(help="the visitor's language; empty detects it")] = "",
    campaign: Annotated[str, typer.Option(help="campaign id carried into the signals")] = "",
) -> None:
    """Chat with the assistant as a website visitor would; shows what it has learnt
    about you (the qualification slots) after each reply. An empty line or Ctrl-D ends."""
    settings = settings_or_exit()

    async def run() -> None:
        from percept.nlp.service import NlpService

        async with (
            served(server, NlpService, settings) as address,
            grpc.aio.insecure_channel(address) as channel,
        ):
            stub = nlp_pb2_grpc.NlpStub(channel)
            session = ""
            while True:
                try:
                    text = (await asyncio.to_thread(input, "you> ")).strip()
                except EOFError:
                    break
                if not text:
                    break
                turn = nlp_pb2.ChatTurn(
                    session_id=session, text=text, language_code=language, campaign_id=campaign
                )
                reply = await stub.Chat(turn, metadata=bearer_of(settings.api_keys))
                session = reply.session_id
                console.print(f"[bold cyan]assistant>[/] {reply.text}", highlight=False)
                if reply.handoff:
                    console.print(f"[bold yellow]handed to a human ({reply.handoff_reason})[/]")
                console.print(_slots_table(reply))

    try:
        asyncio.run(run())
    except grpc.aio.AioRpcError as exc:
        fail(f"nlp service: {exc.code().name}: {exc.details()}")
