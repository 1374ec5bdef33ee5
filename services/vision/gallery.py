"""Enrolled faces of consenting visitors: the only face data the suite keeps.

No image is ever stored: one embedding per enrolment and its consent record,
encrypted at rest (AES-256-GCM, the
row id as associated data, so a ciphertext cannot be moved to another row).
Which lead a face belongs to is kept by leads
alone (the enrolment's signal links the face identity to the lead's keys). Each
enrolment expires after the retention limit; `forget` erases it (the leads
erasure flow calls it through ForgetVisitor). Matching runs in memory over the
decrypted embeddings of unexpired enrolments, reloaded when the table changes
here, or every `refresh_s` (other replicas may have enrolled someone).

SQLite in the data dir by default; any SQLAlchemy URL (in Kubernetes the leads
PostgreSQL) so that replicas share it, which needs a shared key.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    Column,
    DateTime,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

from percept.vision.detection import Floats
from percept.vision.faces import distances

metadata = MetaData()
identities = Table(
    "face_identities",
    metadata,
    Column("face_identity_id", String(64), primary_key=True),
    Column("embedder", String(64), nullable=False),
    Column("embedding", LargeBinary, nullable=False),  # nonce || AES-GCM ciphertext
    Column("consent", LargeBinary, nullable=False),  # encrypted JSON: reference, camera
    Column("enrolled_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("last_seen_at", DateTime(timezone=True), nullable=True),
)
gallery_keys = Table(
    "face_gallery_key_check",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("token", LargeBinary, nullable=False),
)
KEY_CHECK = b"percept face gallery"


class GalleryKeyError(RuntimeError):
    """The configured key cannot read this gallery, or replicas would not share one."""


@dataclass(frozen=True)
class Enrolment:
    face_identity_id: str
    expires_at: datetime


@dataclass(frozen=True)
class Match:
    face_identity_id: str
    distance: float
    last_seen_at: datetime | None  # before this sighting


def load_key(configured: str, key_file: Path, shared_store: bool) -> bytes:
    """The configured key, else one kept in a file beside the embedded store."""
    if configured:
        return base64.b64decode(configured)
    if shared_store:
        raise GalleryKeyError(
            "PERCEPT_VISION_GALLERY_KEY is required with a shared gallery store: every "
            "replica must encrypt with the same key (openssl rand -base64 32)"
        )
    key_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return base64.b64decode(key_file.read_text().strip())
    with os.fdopen(fd, "w") as out:
        out.write(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    return base64.b64decode(key_file.read_text().strip())


class Gallery:
    def __init__(
        self,
        url: str,
        key: bytes,
        embedder: str,
        *,
        retention: timedelta,
        threshold: float,
        refresh_s: float = 30.0,
        clock: type[datetime] = datetime,
    ) -> None:
        self.engine: Engine = create_engine(url)
        metadata.create_all(self.engine)
        self.aead = AESGCM(key)
        self.embedder, self.retention, self.threshold = embedder, retention, threshold
        self.refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._ids: list[str] = []
        self._matrix: Floats = np.zeros((0, 0), np.float32)
        self._expires: npt.NDArray[np.float64] = np.zeros(0, np.float64)
        self._loaded_at = -float("inf")
        self._check_key()

    def now(self) -> datetime:
        return self._clock.now(UTC)

    # -- encryption ---------------------------------------------------------------

    def _seal(self, data: bytes, row: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self.aead.encrypt(nonce, data, row.encode())

    def _open(self, sealed: bytes, row: str) -> bytes:
        return self.aead.decrypt(sealed[:12], sealed[12:], row.encode())

    def _check_key(self) -> None:
        with self.engine.begin() as conn:
            token = conn.scalar(select(gallery_keys.c.token).where(gallery_keys.c.name == "check"))
            if token is None:
                conn.execute(
                    insert(gallery_keys).values(name="check", token=self._seal(KEY_CHECK, "check"))
                )
                return
        try:
            self._open(token, "check")
        except InvalidTag:
            raise GalleryKeyError(
                "the face gallery was encrypted with another key (PERCEPT_VISION_GALLERY_KEY)"
            ) from None

    # -- writes ---------------------------------------------------------------------

    def enroll(self, embedding: Floats, consent: dict[str, str]) -> Enrolment:
        face_id = f"face-{uuid.uuid4().hex}"
        now = self.now()
        expires = now + self.retention
        with self.engine.begin() as conn:
            conn.execute(
                insert(identities).values(
                    face_identity_id=face_id,
                    embedder=self.embedder,
                    embedding=self._seal(embedding.astype("<f4").tobytes(), face_id),
                    consent=self._seal(json.dumps(consent).encode(), face_id),
                    enrolled_at=now,
                    expires_at=expires,
                    last_seen_at=now,
                )
            )
        self._loaded_at = -float("inf")
        return Enrolment(face_id, expires)

    def renew(self, face_identity_id: str, consent: dict[str, str]) -> Enrolment:
        """The same person consented again: a new consent record and retention period."""
        expires = self.now() + self.retention
        with self.engine.begin() as conn:
            conn.execute(
                update(identities)
                .where(identities.c.face_identity_id == face_identity_id)
                .values(
                    consent=self._seal(json.dumps(consent).encode(), face_identity_id),
                    expires_at=expires,
                )
            )
        return Enrolment(face_identity_id, expires)

    def forget(self, face_identity_id: str) -> int:
        with self.engine.begin() as conn:
            erased = conn.execute(
                delete(identities).where(identities.c.face_identity_id == face_identity_id)
            ).rowcount
        self._loaded_at = -float("inf")
        return int(erased)

    def purge_expired(self) -> int:
        with self.engine.begin() as conn:
            purged = conn.execute(
                delete(identities).where(identities.c.expires_at <= self.now())
            ).rowcount
        if purged:
            self._loaded_at = -float("inf")
        return int(purged)

    # -- matching ---------------------------------------------------------------------

    def size(self) -> int:
        """Unexpired enrolments (what matching can find)."""
        self._refresh()
        return int(np.count_nonzero(self._live()))

    def _live(self) -> npt.NDArray[np.bool_]:
        """Which cached enrolments are unexpired now: the cache is reloaded only every
        `refresh_s`, and an enrolment must stop matching the moment its retention ends."""
        now = self.now().timestamp()
        with self._lock:
            return self._expires > now

    def _refresh(self) -> None:
        if time.monotonic() - self._loaded_at < self.refresh_s:
            return
        now = self.now()
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    identities.c.face_identity_id,
                    identities.c.embedding,
                    identities.c.expires_at,
                ).where(identities.c.embedder == self.embedder, identities.c.expires_at > now)
            ).all()
        ids = [row.face_identity_id for row in rows]
        expires = np.array([_utc(row.expires_at).timestamp() for row in rows], np.float64)
        vectors = [
            np.frombuffer(self._open(row.embedding, row.face_identity_id), "<f4") for row in rows
        ]
        with self._lock:
            self._ids = ids
            self._matrix = np.stack(vectors) if vectors else np.zeros((0, 0), np.float32)
            self._expires = expires
            self._loaded_at = time.monotonic()

    def match(self, embedding: Floats) -> Match | None:
        """The closest enrolled face within the threshold; records the sighting."""
        self._refresh()
        live = self._live()
        with self._lock:
            ids, matrix = self._ids, self._matrix
        if not live.any():
            return None
        found = np.where(live, distances(embedding, matrix), np.inf)
        best = int(np.argmin(found))
        if found[best] >= self.threshold:
            return None
        face_id = ids[best]
        with self.engine.begin() as conn:
            last = conn.scalar(
                select(identities.c.last_seen_at).where(identities.c.face_identity_id == face_id)
            )
            conn.execute(
                update(identities)
                .where(identities.c.face_identity_id == face_id)
                .values(last_seen_at=self.now())
            )
        return Match(face_id, float(found[best]), _utc(last) if last is not None else None)

    def close(self) -> None:
        self.engine.dispose()


def _utc(moment: datetime) -> datetime:
    """SQLite gives naive times back; they were stored in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
