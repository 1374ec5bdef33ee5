"""Erasing a lead's face embeddings in the vision service, until vision confirms.

Leads knows which face identities an erased lead had; vision holds their
embeddings. `LeadStore.forget` queues them in the same transaction as the
erasure, `ForgetLead` tries at once, and this task retries what is left with
capped back-off, without ever giving up: a vision outage delays an erasure, it
never loses one. ForgetVisitor is idempotent, so a retry after an unseen
success is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial

import grpc

from percept.leads.store import LeadStore, now_utc
from percept.runtime.periodic import survive
from percept.v1 import vision_pb2, vision_pb2_grpc

log = logging.getLogger("percept.leads.faces")


class FaceErasure:
    def __init__(
        self,
        store: LeadStore,
        channel: grpc.aio.Channel,
        metadata: Sequence[tuple[str, str]] = (),
        *,
        timeout_s: float = 5.0,
        poll_s: float = 2.0,
        min_backoff_s: float = 2.0,
        max_backoff_s: float = 600.0,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self.store, self.channel = store, channel
        self.stub = vision_pb2_grpc.VisionStub(channel)
        self.metadata = tuple(metadata)
        self.timeout_s, self.poll_s = timeout_s, poll_s
        self.min_backoff_s, self.max_backoff_s = min_backoff_s, max_backoff_s
        self.clock = clock

    async def erase(self, faces: Sequence[str]) -> int:
        """One attempt for each face now; returns the embeddings vision erased."""
        results = await asyncio.gather(*(self._attempt(face, 0) for face in faces))
        return sum(r for r in results if r is not None)

    async def _attempt(self, face: str, attempts: int) -> int | None:
        try:
            reply = await self.stub.ForgetVisitor(
                vision_pb2.ForgetVisitorRequest(face_identity_id=face),
                timeout=self.timeout_s,
                metadata=self.metadata,
            )
        except grpc.aio.AioRpcError as exc:
            delay = min(self.min_backoff_s * 2**attempts, self.max_backoff_s)
            retry_at = self.clock() + timedelta(seconds=delay * random.uniform(0.8, 1.2))
            log.warning(
                "face erasure in vision failed; will retry",
                extra={"face_identity_id": face, "code": exc.code().name, "attempt": attempts + 1},
            )
            await asyncio.to_thread(
                self.store.face_erasure_attempted,
                face,
                done=False,
                retry_at=retry_at,
                error=exc.code().name,
            )
            return None
        await asyncio.to_thread(
            self.store.face_erasure_attempted, face, done=True, retry_at=self.clock(), error=None
        )
        log.info(
            "face embeddings erased in vision",
            extra={"face_identity_id": face, "erased": reply.embeddings_erased},
        )
        return int(reply.embeddings_erased)

    async def run(self) -> None:
        while True:
            due = await survive(
                lambda: asyncio.to_thread(self.store.due_face_erasures, self.clock(), 50),
                "face erasure claim",
            )
            if not due:
                await asyncio.sleep(self.poll_s)
                continue
            await asyncio.gather(
                *(survive(partial(self._attempt, f, n), "face erasure") for f, n in due)
            )
