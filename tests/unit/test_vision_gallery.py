"""The face gallery: encrypted at rest, matched strictly, expired and erased on time."""

from __future__ import annotations

import base64
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from percept.vision.gallery import Gallery, GalleryKeyError, load_key

KEY = bytes(range(32))


class Clock:
    """datetime with a settable now()."""

    current = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)

    @classmethod
    def now(cls, tz: object = None) -> datetime:
        return cls.current


def gallery(path: Path, key: bytes = KEY, **kw: object) -> Gallery:
    values: dict[str, object] = {
        "retention": timedelta(days=30),
        "threshold": 0.45,
        "refresh_s": 0.0,
        "clock": Clock,
    }
    values.update(kw)
    return Gallery(f"sqlite:///{path}", key, "test-embedder", **values)  # type: ignore[arg-type]


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.fixture(autouse=True)
def _clock() -> None:
    Clock.current = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def test_match_within_threshold_only_and_sighting_recorded(tmp_path: Path) -> None:
    g = gallery(tmp_path / "g.db")
    person = unit(1)
    enrolment = g.enroll(person, {"reference": "kiosk 1"})
    assert enrolment.expires_at == Clock.current + timedelta(days=30)
    near = (person + 0.01 * unit(2)).astype(np.float32)
    match = g.match(near)
    assert match is not None and match.face_identity_id == enrolment.face_identity_id
    assert match.distance < 0.05
    assert g.match(unit(3)) is None  # someone else: about 1.4 away on the unit sphere
    Clock.current += timedelta(hours=5)
    again = g.match(near)
    assert again is not None and again.last_seen_at == datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def test_nothing_readable_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    g = gallery(path)
    person = unit(4)
    g.enroll(person, {"reference": "signed form 42 at the desk"})
    dump = b"".join(
        bytes(v) if isinstance(v, bytes) else str(v).encode()
        for row in sqlite3.connect(path).execute("SELECT * FROM face_identities")
        for v in row
    )
    assert person.astype("<f4").tobytes()[:16] not in dump
    assert b"signed form 42" not in dump


def test_another_key_cannot_read_the_gallery(tmp_path: Path) -> None:
    gallery(tmp_path / "g.db").enroll(unit(5), {"reference": "r"})
    with pytest.raises(GalleryKeyError, match="encrypted with another key"):
        gallery(tmp_path / "g.db", key=bytes(32))


def test_enrolments_expire_and_are_purged(tmp_path: Path) -> None:
    g = gallery(tmp_path / "g.db", refresh_s=3600.0)  # a cache loaded before the expiry
    person = unit(6)
    g.enroll(person, {"reference": "r"})
    assert g.size() == 1 and g.match(person) is not None  # cached while unexpired
    Clock.current += timedelta(days=31)
    assert g.match(person) is None  # expired: never matched, even from the cache
    assert g.size() == 0
    assert g.purge_expired() == 1


def test_renewal_extends_retention_and_forget_erases(tmp_path: Path) -> None:
    g = gallery(tmp_path / "g.db")
    enrolment = g.enroll(unit(7), {"reference": "r"})
    Clock.current += timedelta(days=20)
    renewed = g.renew(enrolment.face_identity_id, {"reference": "r2"})
    assert renewed.expires_at == Clock.current + timedelta(days=30)
    assert g.forget(enrolment.face_identity_id) == 1
    assert g.forget(enrolment.face_identity_id) == 0  # erasure is idempotent
    assert g.match(unit(7)) is None


def test_embeddings_of_another_embedder_never_match(tmp_path: Path) -> None:
    person = unit(8)
    gallery(tmp_path / "g.db").enroll(person, {"reference": "r"})
    other = Gallery(
        f"sqlite:///{tmp_path / 'g.db'}",
        KEY,
        "another-model",
        retention=timedelta(days=30),
        threshold=0.45,
    )
    assert other.match(person) is None


def test_keys_come_from_settings_or_a_private_file(tmp_path: Path) -> None:
    configured = base64.b64encode(KEY).decode()
    assert load_key(configured, tmp_path / "k", shared_store=True) == KEY
    made = load_key("", tmp_path / "k", shared_store=False)
    assert len(made) == 32 and load_key("", tmp_path / "k", shared_store=False) == made
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    with pytest.raises(GalleryKeyError, match="required with a shared gallery store"):
        load_key("", tmp_path / "k2", shared_store=True)
