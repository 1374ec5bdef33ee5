"""Footfall over days: per camera and zone, one row a minute, kept in vision's store.

Each frame's scene update says who is where; a stream's `FootfallMinutes` adds it
up by minute (entries, exits, average and peak occupancy, the dwell of those who
left) and hands each finished minute to `FootfallStore`. Zone "*" is the whole
view (people in the frame). Two streams of one camera writing the same minute (a
reconnect) merge: counts add, peaks take the larger, averages are weighted by
frames and dwell medians by how many left (an approximation of the merged median).
Buckets longer than a minute are made in SQL, aligned to UTC.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    create_engine,
    delete,
    func,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from percept.vision.scene import SceneUpdate, ZoneChange

VIEW = "*"  # the whole frame: people in view

metadata = MetaData()
minutes = Table(
    "footfall_minutes",
    metadata,
    Column("camera_id", String(64), primary_key=True),
    Column("zone", String(64), primary_key=True),
    Column("minute", BigInteger, primary_key=True),  # minutes since 1970-01-01 UTC
    Column("entries", Integer, nullable=False),
    Column("exits", Integer, nullable=False),
    Column("frames", Integer, nullable=False),
    Column("occupancy_avg", Float, nullable=False),
    Column("occupancy_peak", Integer, nullable=False),
    Column("dwell_count", Integer, nullable=False),
    Column("dwell_median_s", Float, nullable=False),
)


@dataclass(frozen=True)
class MinuteRow:
    camera_id: str
    zone: str
    minute: int
    entries: int = 0
    exits: int = 0
    frames: int = 0
    occupancy_avg: float = 0.0
    occupancy_peak: int = 0
    dwell_count: int = 0
    dwell_median_s: float = 0.0

    def merged(self, other: MinuteRow) -> MinuteRow:
        frames = self.frames + other.frames
        dwells = self.dwell_count + other.dwell_count
        return MinuteRow(
            self.camera_id,
            self.zone,
            self.minute,
            self.entries + other.entries,
            self.exits + other.exits,
            frames,
            (self.occupancy_avg * self.frames + other.occupancy_avg * other.frames)
            / max(1, frames),
            max(self.occupancy_peak, other.occupancy_peak),
            dwells,
            (self.dwell_median_s * self.dwell_count + other.dwell_median_s * other.dwell_count)
            / max(1, dwells),
        )


@dataclass
class _Minute:
    entries: int = 0
    exits: int = 0
    frames: int = 0
    occupancy: int = 0  # summed over frames
    peak: int = 0
    dwells: list[float] = field(default_factory=list)

    def seen(self, people: int) -> None:
        self.frames += 1
        self.occupancy += people
        self.peak = max(self.peak, people)


class FootfallMinutes:
    """One stream's minute in progress."""

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self.minute: int | None = None
        self.zones: dict[str, _Minute] = {}

    def observe(self, update: SceneUpdate, t: float) -> list[MinuteRow]:
        """Adds one frame; returns the minute it finished, if it started a new one."""
        minute = int(t // 60)
        done = self.flush() if self.minute is not None and minute != self.minute else []
        self.minute = minute
        self.zones.setdefault(VIEW, _Minute()).seen(len(update.people))
        for occupancy in update.occupancy:
            self.zones.setdefault(occupancy.zone, _Minute()).seen(occupancy.people)
        self._count(update.changes)
        return done

    def leave(self, changes: Sequence[ZoneChange], t: float) -> None:
        """The stream ended at `t` with people still inside: they leave now, so their
        exits and dwell count, as those of people who walked out of view do."""
        if self.minute is None:
            self.minute = int(t // 60)
        self._count(changes)

    def _count(self, changes: Sequence[ZoneChange]) -> None:
        for change in changes:
            zone = self.zones.setdefault(change.zone.name, _Minute())
            if change.entered:
                zone.entries += 1
            else:
                zone.exits += 1
                if change.zone.kind != "line":
                    zone.dwells.append(change.dwell_s)

    def flush(self) -> list[MinuteRow]:
        """The minute so far, as rows (the stream ended, or a new minute began)."""
        rows = self.current()
        self.minute, self.zones = None, {}
        return rows

    def current(self) -> list[MinuteRow]:
        """The minute in progress, as rows, kept going."""
        if self.minute is None:
            return []
        return [
            MinuteRow(
                self.camera_id,
                zone,
                self.minute,
                m.entries,
                m.exits,
                m.frames,
                m.occupancy / max(1, m.frames),
                m.peak,
                len(m.dwells),
                statistics.median(m.dwells) if m.dwells else 0.0,
            )
            for zone, m in sorted(self.zones.items())
        ]


def with_rows(
    buckets: Sequence[MinuteRow], rows: Sequence[MinuteRow], start: int, end: int, size: int
) -> list[MinuteRow]:
    """`buckets` (rows whose minute is where each starts) with minutes not stored yet (the
    open streams') added in."""
    found = {b.minute: b for b in buckets}
    for row in rows:
        if start <= row.minute < end:
            at = row.minute // size * size
            empty = MinuteRow(row.camera_id, row.zone, at)
            found[at] = found.get(at, empty).merged(row)
    return [found[at] for at in sorted(found)]


class FootfallStore:
    """The minutes table (SQLite in data_dir by default, any SQLAlchemy URL); thread-safe."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url)
        try:
            metadata.create_all(self.engine)
        except DBAPIError:  # another replica created it at the same moment
            metadata.create_all(self.engine)
        self._lock = threading.Lock()  # merges read then write: one writer at a time here

    def write(self, rows: Sequence[MinuteRow]) -> None:
        if not rows:
            return
        with self._lock, self.engine.begin() as db:
            for row in rows:
                key = and_(
                    minutes.c.camera_id == row.camera_id,
                    minutes.c.zone == row.zone,
                    minutes.c.minute == row.minute,
                )
                found = db.execute(select(minutes).where(key)).mappings().first()
                if found is None:
                    db.execute(minutes.insert().values(**row.__dict__))
                else:
                    merged = row.merged(MinuteRow(**dict(found)))
                    db.execute(minutes.update().where(key).values(**merged.__dict__))

    def buckets(
        self, camera_id: str, zone: str, start_minute: int, end_minute: int, bucket_minutes: int
    ) -> list[MinuteRow]:
        """Buckets with data in [start, end), each `bucket_minutes` long from the epoch, as
        rows whose minute is where the bucket starts."""
        c = minutes.c
        start = (c.minute // bucket_minutes) * bucket_minutes  # floor division in every dialect
        frames = func.sum(c.frames)
        dwells = func.sum(c.dwell_count)
        query = (
            select(
                start.label("start"),
                func.sum(c.entries),
                func.sum(c.exits),
                frames,
                func.sum(c.occupancy_avg * c.frames) / func.nullif(frames, 0),
                func.max(c.occupancy_peak),
                dwells,
                func.sum(c.dwell_median_s * c.dwell_count) / func.nullif(dwells, 0),
            )
            .where(
                c.camera_id == camera_id,
                c.zone == zone,
                c.minute >= start_minute,
                c.minute < end_minute,
            )
            .group_by(start)
            .order_by(start)
        )
        with self.engine.connect() as db:
            return [
                MinuteRow(
                    camera_id,
                    zone,
                    int(r[0]),
                    int(r[1]),
                    int(r[2]),
                    int(r[3]),
                    float(r[4] or 0),
                    int(r[5]),
                    int(r[6]),
                    float(r[7] or 0),
                )
                for r in db.execute(query)
            ]

    def purge(self, before_minute: int) -> int:
        with self._lock, self.engine.begin() as db:
            return db.execute(delete(minutes).where(minutes.c.minute < before_minute)).rowcount

    def close(self) -> None:
        self.engine.dispose()
