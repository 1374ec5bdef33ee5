"""Vision services on loopback with the real models, and camera clients for the tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from local_servers import local_settings

from percept.models import model_store
from percept.runtime.server import Service, ServiceHost
from percept.runtime.settings import Settings
from percept.v1 import vision_pb2, vision_pb2_grpc
from percept.vision.client import lockstep as stream_lockstep
from percept.vision.images import encode_jpeg
from percept.vision.service import VisionService

# Read before any test isolates the environment: where `percept models pull nanodet`
# (scripts/setup.sh) put NanoDet.
MODEL_DIR = Settings().resolved_model_dir
T0 = float(int(time.time()) - 3600)  # the test cameras started capturing an hour ago


def vision_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "model_dir": MODEL_DIR,
        "vision_device": "cpu",
        # No leads: the outbox keeps signals (unless a test sets one).
        "leads_address": "127.0.0.1:9",
    }
    settings = local_settings(data_dir, **{**values, **overrides})
    if "model_dir" not in overrides and model_store(settings).find("nanodet") is None:
        raise RuntimeError(f"NanoDet is not in {MODEL_DIR}: run `percept models pull nanodet`")
    return settings


async def start_vision(settings: Settings) -> tuple[VisionService, ServiceHost]:
    service = VisionService(settings)
    host = ServiceHost(service, settings)
    await host.start()
    await asyncio.wait_for(host.ready.wait(), 240)
    assert service.servicer.engine is not None, "the vision service failed to load"
    return service, host


async def leads_then_vision(
    start_host: Callable[[Service, Settings], Awaitable[ServiceHost]],
    leads_settings: Settings,
    data_dir: Path,
    **vision_overrides: object,
) -> tuple[ServiceHost, Settings, VisionService, ServiceHost]:
    """A leads server (stopped by `start_host`'s fixture), then vision sending it signals.

    Returns (leads host, vision settings, vision service, vision host); the caller
    stops the vision host (it may restart vision on the same settings)."""
    from percept.leads.service import LeadsService

    leads = await start_host(LeadsService(leads_settings), leads_settings)
    await asyncio.wait_for(leads.ready.wait(), 60)
    settings = vision_settings(data_dir, leads_address=leads.address, **vision_overrides)
    service, vision = await start_vision(settings)
    return leads, settings, service, vision


def frame(
    image: npt.NDArray[np.uint8], sequence: int, t: float, camera: str = "store-front"
) -> vision_pb2.Frame:
    message = vision_pb2.Frame(
        camera_id=camera, sequence=sequence, image=vision_pb2.Image(encoded=encode_jpeg(image))
    )
    message.captured_at.FromNanoseconds(round(t * 1e9))
    return message


def frames_of(
    images: Sequence[npt.NDArray[np.uint8]], step_s: float, camera: str = "store-front"
) -> list[vision_pb2.Frame]:
    return [frame(image, i, T0 + i * step_s, camera) for i, image in enumerate(images)]


async def lockstep(
    stub: vision_pb2_grpc.VisionAsyncStub, frames: Sequence[vision_pb2.Frame]
) -> list[vision_pb2.FrameResult]:
    """A camera that sends its next frame when the last result is back: nothing dropped."""
    return [result async for result in stream_lockstep(stub, frames)]
