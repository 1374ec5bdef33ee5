"""A malformed cameras file keeps vision from serving, and its log says where the mistake is."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2
from vision_harness import vision_settings

from percept.runtime.server import ServiceHost
from percept.vision.service import VisionService

pytestmark = pytest.mark.slow


async def test_a_bad_zone_stops_vision_at_start_naming_its_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(
        "cameras:\n  door:\n    zones:\n      - name: mat\n"
        "        polygon: [[0, 0], [1, 1], [1, 0], [0, 1]]\n"
    )
    settings = vision_settings(tmp_path / "data", vision_cameras_file=cameras)
    caplog.set_level(logging.ERROR, logger="percept.server")
    host = ServiceHost(VisionService(settings), settings)
    await host.start()
    try:
        for _ in range(200):
            if any("failed to load" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.05)
        failure = next(r for r in caplog.records if "failed to load" in r.getMessage())
        assert failure.exc_info is not None
        assert f"{cameras} line 5: cameras.door.zones.0.polygon: not a simple polygon" in str(
            failure.exc_info[1]
        )
        status = await host.health.Check(health_pb2.HealthCheckRequest(service=""), None)
        assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await host.stop(grace=1)
