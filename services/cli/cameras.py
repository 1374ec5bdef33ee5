"""`percept cameras` and `percept footfall CAMERA`: the cameras a vision server runs, and
who went where over time."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated

import grpc
import typer
from google.protobuf.duration_pb2 import Duration
from google.protobuf.json_format import MessageToDict
from rich.table import Table

from percept.cli.common import console, fail
from percept.runtime.clients import bearer
from percept.v1 import vision_pb2, vision_pb2_grpc

Server = Annotated[str, typer.Option("--server", help="vision service address")]
ApiKey = Annotated[
    str | None, typer.Option("--api-key", envvar="PERCEPT_API_KEY", help="API key, if required")
]
DEFAULT_SERVER = "127.0.0.1:50052"
STATE_COLOURS = {
    "streaming": "green",
    "connecting": "yellow",
    "reconnecting": "yellow",
    "failed": "bold red",
    "ended": "blue",
}


@contextmanager
def vision_stub(
    server: str, api_key: str | None
) -> Iterator[tuple[vision_pb2_grpc.VisionStub, tuple[tuple[str, str], ...]]]:
    with grpc.insecure_channel(server) as channel:
        try:
            yield vision_pb2_grpc.VisionStub(channel), bearer(api_key)
        except grpc.RpcError as exc:
            fail(f"{exc.code().name}: {exc.details()}")


def _ago(stamp: float) -> str:
    return f"{max(0.0, time.time() - stamp):.0f} s ago" if stamp else "-"


def cameras_command(
    server: Server = DEFAULT_SERVER,
    api_key: ApiKey = None,
    as_json: Annotated[bool, typer.Option("--json", help="the ListCameras answer as JSON")] = False,
) -> None:
    """The cameras, their zones, and how each camera vision pulls itself is doing."""
    with vision_stub(server, api_key) as (stub, metadata):
        found = stub.ListCameras(vision_pb2.ListCamerasRequest(), metadata=metadata, timeout=10)
    if as_json:
        typer.echo(json.dumps(MessageToDict(found, preserving_proto_field_name=True), indent=2))
        return
    table = Table(title=f"{len(found.cameras)} cameras")
    columns = ("camera", "source", "state", "received", "analysed", "dropped", "last frame")
    for column in (*columns, "reconnects", "zones", "last error"):
        table.add_column(column)
    for camera in found.cameras:
        source = camera.source
        pulled = camera.HasField("source")
        state = vision_pb2.SourceState.Name(source.state).removeprefix("SOURCE_STATE_").lower()
        shown = state if pulled else ("streaming" if camera.streaming else "waiting")
        last = source.last_frame_at.seconds + source.last_frame_at.nanos / 1e9
        table.add_row(
            camera.camera_id,
            source.url if pulled else "pushed (StreamFrames)",
            f"[{STATE_COLOURS.get(shown, '')}]{shown}[/]",
            str(source.frames_received) if pulled else "-",
            str(source.frames_analysed) if pulled else "-",
            str(source.frames_dropped) if pulled else "-",
            _ago(last) if pulled else "-",
            str(source.reconnects) if pulled else "-",
            ", ".join(f"{z.name} ({z.kind})" for z in camera.zones) or "-",
            source.last_error or "",
        )
    console.print(table)
    if found.cameras_file_error:
        console.print(f"[bold red]cameras file edit refused:[/] {found.cameras_file_error}")


def footfall_command(
    camera: Annotated[str, typer.Argument(help="camera id")],
    zone: Annotated[str, typer.Option(help="a zone or line; empty: the whole view")] = "",
    hours: Annotated[float, typer.Option(min=0.02, max=24 * 400, help="how far back")] = 24.0,
    bucket_minutes: Annotated[int, typer.Option("--bucket", min=1, help="minutes")] = 60,
    server: Server = DEFAULT_SERVER,
    api_key: ApiKey = None,
    as_json: Annotated[bool, typer.Option("--json", help="the Footfall answer as JSON")] = False,
) -> None:
    """People over time on a camera: entries, exits, occupancy and dwell per bucket."""
    request = vision_pb2.GetFootfallRequest(
        camera_id=camera, zone=zone, bucket=Duration(seconds=bucket_minutes * 60)
    )
    request.start.FromSeconds(int(time.time() - hours * 3600))
    with vision_stub(server, api_key) as (stub, metadata):
        found = stub.GetFootfall(request, metadata=metadata, timeout=30)
    if as_json:
        typer.echo(json.dumps(MessageToDict(found, preserving_proto_field_name=True), indent=2))
        return
    title = (
        f"{camera} / {zone or 'whole view'}: {len(found.buckets)} buckets of {bucket_minutes} min"
    )
    table = Table(title=title)
    for column in ("from (UTC)", "in", "out", "people avg", "peak", "left", "median dwell"):
        table.add_column(column)
    for b in found.buckets:
        start = datetime.fromtimestamp(b.start.seconds, UTC).strftime("%Y-%m-%d %H:%M")
        dwell = b.dwell_median.ToTimedelta().total_seconds()
        table.add_row(
            start,
            str(b.entries),
            str(b.exits),
            f"{b.occupancy_avg:.1f}",
            str(b.occupancy_peak),
            str(b.dwell_count),
            f"{dwell:.0f} s" if b.dwell_count else "-",
        )
    console.print(table)
