"""`percept detect IMAGE` and `percept watch VIDEO_OR_DIR`: the vision service from a terminal."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any

import grpc
import numpy as np
import typer
from google.protobuf.json_format import MessageToDict
from rich.table import Table

from percept.cli.common import console, fail, served, settings_or_exit
from percept.runtime.clients import bearer_of
from percept.v1 import vision_pb2, vision_pb2_grpc
from percept.vision.client import lockstep

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ENTER = vision_pb2.ZoneEvent.EVENT_TYPE_ENTER


def _vision_service() -> type:
    from percept.vision.service import VisionService  # models: only when run in-process

    return VisionService


def _print_detections(result: vision_pb2.Detections, source: str) -> None:
    table = Table(title=f"{source}: {result.image_width}x{result.image_height}, {result.model}")
    for column in ("label", "confidence", "box (x0, y0, x1, y1)"):
        table.add_column(column)
    for d in result.detections:
        b = d.box
        table.add_row(
            d.label,
            f"{d.confidence:.2f}",
            f"{b.x_min:.0f}, {b.y_min:.0f}, {b.x_max:.0f}, {b.y_max:.0f}",
        )
    for f in result.faces:
        b = f.box
        who = f"face ({'enrolled ' + f.visitor_id if f.enrolled else 'not enrolled'})"
        table.add_row(
            who,
            f"{f.confidence:.2f}",
            f"{b.x_min:.0f}, {b.y_min:.0f}, {b.x_max:.0f}, {b.y_max:.0f}",
        )
    console.print(table)
    took = result.inference_time.ToTimedelta().total_seconds() * 1000
    console.print(f"{len(result.detections)} objects, {len(result.faces)} faces in {took:.0f} ms")


def detect_command(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a JPEG or PNG")],
    server: Annotated[
        str | None,
        typer.Option(help="vision server host:port; without it a server runs in this process"),
    ] = None,
    faces: Annotated[bool, typer.Option("--faces", help="also find faces")] = False,
    min_confidence: Annotated[float, typer.Option(help="0 uses the server default")] = 0.0,
    classes: Annotated[
        list[str] | None, typer.Option("--class", help="keep only this label (repeatable)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the Detections message as JSON")] = False,
) -> None:
    """Detect objects (and faces) in one image."""
    settings = settings_or_exit()
    request = vision_pb2.DetectRequest(
        image=vision_pb2.Image(encoded=image.read_bytes()),
        min_confidence=min_confidence,
        classes=classes or [],
        detect_faces=faces,
    )

    async def run() -> vision_pb2.Detections:
        async with (
            served(server, _vision_service(), settings) as address,
            grpc.aio.insecure_channel(address) as channel,
        ):
            stub = vision_pb2_grpc.VisionStub(channel)
            return await stub.Detect(request, metadata=bearer_of(settings.api_keys))

    try:
        result = asyncio.run(run())
    except grpc.aio.AioRpcError as exc:
        fail(f"vision service: {exc.code().name}: {exc.details()}")
    if as_json:
        typer.echo(json.dumps(MessageToDict(result), ensure_ascii=False))
    else:
        _print_detections(result, image.name)


def frames_from(source: Path, fps: float) -> Iterator[tuple[np.ndarray, float]]:
    """(RGB frame, seconds from the start) from a video file, or a folder of images at `fps`.

    The source is checked here, before any streaming starts (an error inside the
    request stream would only cancel the call)."""
    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            fail(f"{source}: no .jpg or .png images", 2)
        return _images(paths, fps)
    import av

    try:
        container = av.open(str(source))
    except av.FFmpegError as exc:
        fail(f"{source}: not a readable video ({exc})", 2)
    if not container.streams.video:
        fail(f"{source}: no video stream", 2)
    return _video(container)


def _images(paths: list[Path], fps: float) -> Iterator[tuple[np.ndarray, float]]:
    from PIL import Image

    for i, path in enumerate(paths):
        yield np.asarray(Image.open(path).convert("RGB")), i / fps


def _video(container: Any) -> Iterator[tuple[np.ndarray, float]]:
    with container:
        for frame in container.decode(container.streams.video[0]):
            seconds = float(frame.time) if frame.time is not None else 0.0
            yield frame.to_ndarray(format="rgb24"), seconds


async def _frames(
    frames: Iterator[tuple[np.ndarray, float]], camera: str, live: bool
) -> AsyncIterator[vision_pb2.Frame]:
    """Frames as messages; `live`: at the pace they were filmed (the service may skip some)."""
    from percept.vision.images import encode_jpeg

    start, origin = time.perf_counter(), time.time()
    for sequence, (rgb, at) in enumerate(frames):
        if live:
            await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
        frame = vision_pb2.Frame(
            camera_id=camera, sequence=sequence, image=vision_pb2.Image(encoded=encode_jpeg(rgb))
        )
        frame.captured_at.FromNanoseconds(round((origin + at) * 1e9))
        yield frame


def _print_result(result: vision_pb2.FrameResult) -> None:
    tracks = sorted(o.track_id for o in result.objects if o.track_id)
    zones = ", ".join(
        f"{z.zone} {z.people}" + (f" (queue {z.queue_length})" if z.queue_length else "")
        for z in result.zones
    )
    line = f"#{result.sequence:<5} people {result.people_count:<2} tracks {tracks}  zones: {zones}"
    if result.frames_dropped:
        line += f"  [dim]({result.frames_dropped} frames skipped: analysis behind the camera)[/]"
    console.print(line, highlight=False)
    for e in result.zone_events:
        if e.type == ENTER:
            console.print(f"        track {e.track_id} [green]entered[/] {e.zone}")
        else:
            dwell = e.dwell.ToTimedelta().total_seconds()
            console.print(
                f"        track {e.track_id} [yellow]left[/] {e.zone} after {dwell:.1f} s"
            )
    for f in result.faces:
        who = f"enrolled visitor {f.visitor_id}" if f.enrolled else "a visitor (not enrolled)"
        console.print(f"        face: {who}")


def watch_command(
    source: Annotated[
        Path, typer.Argument(exists=True, help="a video file, or a folder of JPEG/PNG frames")
    ],
    camera: Annotated[str, typer.Option(help="camera id in the cameras file")] = "store-front",
    zones: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="a cameras file (in-process server only)"),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(help="vision server host:port; without it a server runs in this process"),
    ] = None,
    fps: Annotated[float, typer.Option(help="frame rate of a folder of images")] = 5.0,
    fast: Annotated[
        bool, typer.Option("--fast", help="analyse every frame, as fast as the service goes")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per result")] = False,
) -> None:
    """Stream a video (or frames) as a live camera and print tracks, zone events and counts."""
    if zones is not None and server is not None:
        fail("--zones configures an in-process server; a running server has its own cameras", 2)
    if fps <= 0:
        fail("--fps must be more than 0", 2)
    settings = settings_or_exit(vision_cameras_file=zones)
    frames = frames_from(source, fps)

    async def run() -> None:
        async with (
            served(server, _vision_service(), settings) as address,
            grpc.aio.insecure_channel(address) as channel,
        ):
            stub = vision_pb2_grpc.VisionStub(channel)
            messages, metadata = _frames(frames, camera, not fast), bearer_of(settings.api_keys)
            results = (
                lockstep(stub, messages, metadata)  # every frame analysed
                if fast
                else stub.StreamFrames(messages, metadata=metadata)
            )
            async for result in results:
                if as_json:
                    typer.echo(json.dumps(MessageToDict(result), ensure_ascii=False))
                else:
                    _print_result(result)

    try:
        asyncio.run(run())
    except grpc.aio.AioRpcError as exc:
        hint = ""
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            hint = " (give --camera of the cameras file, or --zones FILE with your camera)"
        fail(f"vision service: {exc.code().name}: {exc.details()}{hint}")
