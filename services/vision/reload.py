"""Edits to the cameras file take effect without a restart.

Kubernetes updates a mounted ConfigMap by swapping a symlink and editors replace
files, so the file's bytes are compared, not its modification time. A malformed
edit is refused with its line named (logged, counted, and said by ListCameras) and
the running cameras are kept until a good edit comes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from percept.runtime.periodic import every
from percept.understanding.entities import catalog
from percept.vision.cameras import Camera, CameraConfigError, load_cameras
from percept.vision.metrics import VisionMetrics

log = logging.getLogger("percept.vision")
Apply = Callable[[Mapping[str, Camera]], Awaitable[None]]


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return f"unreadable: {exc.strerror}"


class CamerasReloader:
    def __init__(self, path: Path, apply: Apply, interval_s: float, metrics: VisionMetrics) -> None:
        self.path, self.apply, self.interval_s, self.metrics = path, apply, interval_s, metrics
        self.digest = _digest(path)  # as loaded at start
        self.error = ""  # why the latest edit was refused; empty once one is taken

    async def run(self) -> None:
        await every(self.interval_s, self.check, "cameras file check")

    async def check(self) -> bool:
        """Takes an edit if there is one; True when the cameras changed."""
        digest = await asyncio.to_thread(_digest, self.path)
        if digest == self.digest:
            return False
        self.digest = digest
        try:
            cameras = await asyncio.to_thread(load_cameras, self.path, sorted(catalog()))
        except CameraConfigError as exc:
            self.error = f"{exc}; the cameras as they were are kept"
            self.metrics.reloads.labels("refused").inc()
            log.error("cameras file edit refused", extra={"error": str(exc)})
            return False
        self.error = ""
        try:
            await self.apply(cameras)
        except BaseException:
            self.digest = ""  # not taken: tried again on the next round
            raise
        self.metrics.reloads.labels("applied").inc()
        log.info("cameras file reloaded", extra={"cameras": len(cameras)})
        return True
