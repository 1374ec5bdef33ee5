"""`percept transcribe FILE`: stream a recording as a live call and print what comes back."""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
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


ROLES = {
    "agent": speech_pb2.CHANNEL_ROLE_AGENT,
    "customer": speech_pb2.CHANNEL_ROLE_CUSTOMER,
    "unspecified": speech_pb2.CHANNEL_ROLE_UNSPECIFIED,
}


class Encoding(StrEnum):
    LINEAR16 = "linear16"
    MULAW = "mulaw"
    ALAW = "alaw"


ENCODINGS = {  # the wire encoding and bytes per sample
    Encoding.LINEAR16: (speech_pb2.AUDIO_ENCODING_LINEAR16, 2),
    Encoding.MULAW: (speech_pb2.AUDIO_ENCODING_MULAW, 1),
    Encoding.ALAW: (speech_pb2.AUDIO_ENCODING_ALAW, 1),
}


def parse_roles(text: str) -> list[speech_pb2.ChannelRole.ValueType]:
    """ "agent,customer" -> the roles in channel order."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROLES]
    if unknown:
        fail(f"--channels: {', '.join(unknown)} is not a role (agent, customer, unspecified)", 2)
    return [ROLES[n] for n in names]


def _wav_byte_rate(data: bytes) -> int | None:
    """A canonical WAV header's bytes per second, to pace the file as it was spoken."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE" or data[12:16] != b"fmt ":
        return None
    return int.from_bytes(data[28:32], "little") or None


def _role_name(event: Event) -> str:
    return speech_pb2.ChannelRole.Name(event.role).removeprefix("CHANNEL_ROLE_").lower()


def _as_json(event: Event) -> str:
    fields = MessageToDict(event)
    fields.setdefault("channel", 0)  # proto3 leaves zeros out; a reader wants them
    fields["role"] = _role_name(event)
    return json.dumps(fields, ensure_ascii=False)


def _print(event: Event) -> None:
    who = f"[magenta]{_role_name(event)}[/] " if event.role else ""
    if event.type == Event.EVENT_TYPE_PARTIAL:
        rest = event.transcript[len(event.stable_prefix) :]
        console.print(f"{who}[dim]… {event.stable_prefix}[/][italic dim]{rest}[/]", highlight=False)
    elif event.type == Event.EVENT_TYPE_FINAL:
        at = event.start_offset.ToTimedelta().total_seconds()
        console.print(f"[bold]{at:7.2f}s  {who}{event.transcript}[/]", highlight=False)
        for i in event.intents:
            console.print(f"          intent [green]{i.name}[/] {i.confidence:.2f}")
        for e in event.entities:
            shown = f"[dim]{e.text} (redacted)[/]" if e.redacted else e.normalized_value
            console.print(f"          entity [cyan]{e.type}[/] {shown}")
        if event.sentiment:
            feeling = common_pb2.Sentiment.Name(event.sentiment).removeprefix("SENTIMENT_")
            console.print(f"          sentiment {feeling.lower()} {event.sentiment_score:+.2f}")
    elif event.type == Event.EVENT_TYPE_CALL_SUMMARY:
        _print_summary(event.summary)


def _print_summary(summary: speech_pb2.CallSummary) -> None:
    seconds = summary.duration.ToTimedelta().total_seconds
    console.print(
        f"[bold]call summary[/]  {seconds():.1f} s, non-talk "
        f"{summary.non_talk_time.ToTimedelta().total_seconds():.1f} s in {summary.silences} "
        f"silence(s), {summary.interruptions} interruption(s)"
    )
    for r in summary.roles:
        name = speech_pb2.ChannelRole.Name(r.role).removeprefix("CHANNEL_ROLE_").lower()
        feeling = common_pb2.Sentiment.Name(r.sentiment).removeprefix("SENTIMENT_").lower()
        console.print(
            f"          {name}: talk {r.talk_time.ToTimedelta().total_seconds():.1f} s, "
            f"{r.words_per_minute:.0f} wpm, {r.interruptions} interruption(s), "
            f"sentiment {feeling} {r.sentiment_score:+.2f} (trend {r.sentiment_trend:+.2f})"
        )


async def _stream(
    address: str,
    settings: Settings,
    config: speech_pb2.RecognitionConfig,
    audio: bytes,
    rate: int,
    **kw: bool,
) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = speech_pb2_grpc.SpeechStub(channel)
        requests = call_requests(config, audio, kw["fast"], bytes_per_second=rate)
        call = stub.StreamingRecognize(requests, metadata=bearer_of(settings.api_keys))
        async for event in call:
            if kw["as_json"]:
                typer.echo(_as_json(event))
            else:
                _print(event)


def _call_audio(
    file: Path,
    encoding: Encoding | None,
    sample_rate: int,
    roles: list[speech_pb2.ChannelRole.ValueType],
) -> tuple[speech_pb2.RecognitionConfig, bytes, int]:
    """The config, the bytes to send and their bytes per second. Headerless files are
    sent as they are; a WAV with per-channel roles as a WAV (the server splits it);
    anything else as 16 kHz mono PCM."""
    channels = max(1, len(roles))
    separate = len(roles) > 1
    if encoding is not None:
        if sample_rate <= 0:
            fail("--sample-rate: required with --encoding (8000 for telephone audio)", 2)
        kind, width = ENCODINGS[encoding]
        config = speech_pb2.RecognitionConfig(
            encoding=kind,
            sample_rate_hz=sample_rate,
            audio_channel_count=channels,
            separate_channel_recognition=separate,
            channel_roles=roles,
        )
        return config, file.read_bytes(), sample_rate * width * channels
    if separate:
        data = file.read_bytes()
        rate = _wav_byte_rate(data)
        if rate is None:
            fail(f"--channels: {file} is not a WAV; per-channel roles need a WAV or --encoding", 2)
        config = speech_pb2.RecognitionConfig(
            encoding=speech_pb2.AUDIO_ENCODING_WAV,
            separate_channel_recognition=True,
            channel_roles=roles,
        )
        return config, data, rate
    config = speech_pb2.RecognitionConfig(
        encoding=speech_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hz=RATE, channel_roles=roles
    )
    return config, read_audio(file), RATE * 2


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
    channels: Annotated[
        str,
        typer.Option(
            help="each channel's role in channel order, e.g. agent,customer: each channel "
            "is recognized on its own, and only the customer's words become lead signals"
        ),
    ] = "",
    encoding: Annotated[
        Encoding | None,
        typer.Option(help="the file is headerless audio in this encoding (G.711: mulaw, alaw)"),
    ] = None,
    sample_rate: Annotated[int, typer.Option(help="sample rate of a headerless file")] = 0,
) -> None:
    """Stream FILE to the speech service at real-time pace and print partials, finals,
    intents and entities as they come."""
    settings = settings_or_exit()
    config, audio, rate = _call_audio(file, encoding, sample_rate, parse_roles(channels))
    config.language_code = language
    config.call_id = call_id
    config.caller.CopyFrom(common_pb2.IdentityKeys(phone=caller))
    config.interim_results = interim

    async def run() -> None:
        from percept.speech.service import SpeechService

        async with served(server, SpeechService, settings) as address:
            await _stream(address, settings, config, audio, rate, fast=fast, as_json=as_json)

    try:
        asyncio.run(run())
    except grpc.aio.AioRpcError as exc:
        fail(f"speech service: {exc.code().name}: {exc.details()}")
