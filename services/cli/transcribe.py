"""`percept transcribe FILE`: stream a recording as a live call and print what comes back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import grpc
import typer
from google.protobuf.json_format import MessageToDict

from percept.cli.common import console, fail, served, settings_or_exit
from percept.runtime.clients import bearer_of
from percept.runtime.settings import Settings
from percept.speech.client import RATE, call_requests
from percept.v1 import common_pb2, speech_pb2, speech_pb2_grpc

Event = speech_pb2.RecognitionEvent


def read_audio(path: Path) -> bytes:
    """Any file FFmpeg reads, as 16 kHz mono 16-bit PCM."""
    from percept.speech.audio import AudioError, decode_file, pcm16  # FFmpeg: only when used

    try:
        return pcm16(decode_file(str(path), path.name)).astype("<i2").tobytes()
    except AudioError as exc:
        fail(f"{path}: not a readable audio file ({exc})", 2)


def _print(event: Event) -> None:
    if event.type == Event.EVENT_TYPE_PARTIAL:
        rest = event.transcript[len(event.stable_prefix) :]
        console.print(f"[dim]… {event.stable_prefix}[/][italic dim]{rest}[/]", highlight=False)
    elif event.type == Event.EVENT_TYPE_FINAL:
        at = event.start_offset.ToTimedelta().total_seconds()
        console.print(f"[bold]{at:7.2f}s  {event.transcript}[/]", highlight=False)
        for i in event.intents:
            console.print(f"          intent [green]{i.name}[/] {i.confidence:.2f}")
        for e in event.entities:
            console.print(f"          entity [cyan]{e.type}[/] {e.normalized_value}")


async def _stream(
    address: str, settings: Settings, config: speech_pb2.RecognitionConfig, pcm: bytes, **kw: bool
) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = speech_pb2_grpc.SpeechStub(channel)
        call = stub.StreamingRecognize(
            call_requests(config, pcm, kw["fast"]), metadata=bearer_of(settings.api_keys)
        )
        async for event in call:
            if kw["as_json"]:
                typer.echo(json.dumps(MessageToDict(event), ensure_ascii=False))
            else:
                _print(event)


def transcribe_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a recording")],
    server: Annotated[
        str | None,
        typer.Option(help="speech server host:port; without it a server runs in this process"),
    ] = None,
    fast: Annotated[bool, typer.Option("--fast", help="send as fast as possible")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per event")] = False,
    language: Annotated[str, typer.Option(help="BCP-47 code, or auto")] = "auto",
    caller: Annotated[str, typer.Option(help="the caller's phone number (E.164)")] = "",
    call_id: Annotated[str, typer.Option(help="the call's id, carried into signals")] = "",
    interim: Annotated[bool, typer.Option(help="partial results while speech goes on")] = True,
) -> None:
    """Stream FILE to the speech service at real-time pace and print partials, finals,
    intents and entities as they come."""
    settings = settings_or_exit()
    pcm = read_audio(file)
    config = speech_pb2.RecognitionConfig(
        encoding=speech_pb2.AUDIO_ENCODING_LINEAR16,
        sample_rate_hz=RATE,
        language_code=language,
        call_id=call_id,
        caller=common_pb2.IdentityKeys(phone=caller),
        interim_results=interim,
    )

    async def run() -> None:
        from percept.speech.service import SpeechService

        async with served(server, SpeechService, settings) as address:
            await _stream(address, settings, config, pcm, fast=fast, as_json=as_json)

    try:
        asyncio.run(run())
    except grpc.aio.AioRpcError as exc:
        fail(f"speech service: {exc.code().name}: {exc.details()}")
