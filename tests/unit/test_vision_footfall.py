"""Footfall minutes: added up from the scene, merged across streams, bucketed in SQL,
and GetFootfall's request checked field by field."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from percept.v1 import vision_pb2
from percept.vision.cameras import Camera, Zone
from percept.vision.footfall import (
    VIEW,
    FootfallMinutes,
    FootfallStore,
    MinuteRow,
    with_rows,
)
from percept.vision.footfall_query import FootfallQueryError, footfall_query
from percept.vision.scene import Occupancy, SceneUpdate, Track, ZoneChange

SHELF = Zone(name="shelf", kind="product", product="phone", polygon=((0, 0), (1, 0), (1, 1)))
T0 = 1_800_000_000.0 - 1_800_000_000.0 % 3600  # on the hour


def update(people: int, shelf: int, changes: list[ZoneChange] | None = None) -> SceneUpdate:
    tracks = [Track(i, f"v{i}", 0, 0, None) for i in range(people)]  # type: ignore[arg-type]
    return SceneUpdate(
        people=tracks,
        objects=None,  # type: ignore[arg-type]
        object_tracks=None,  # type: ignore[arg-type]
        changes=changes or [],
        occupancy=[Occupancy("shelf", shelf, 0)],
        density=None,  # type: ignore[arg-type]
        crowded=[],
    )


def test_minutes_add_up_frames_and_close_when_the_next_begins() -> None:
    minutes = FootfallMinutes("cam")
    someone = Track(1, "v1", 0, 0, None)  # type: ignore[arg-type]
    assert minutes.observe(update(2, 1, [ZoneChange(True, SHELF, someone)]), T0 + 1) == []
    assert minutes.observe(update(4, 3), T0 + 30) == []
    left = [ZoneChange(False, SHELF, someone, dwell_s=12.0)]
    assert minutes.observe(update(1, 0, left), T0 + 59) == []
    done = minutes.observe(update(0, 0), T0 + 61)  # the next minute: the first is done
    rows = {r.zone: r for r in done}
    assert rows[VIEW] == MinuteRow("cam", VIEW, int(T0 // 60), 0, 0, 3, 7 / 3, 4, 0, 0.0)
    shelf = rows["shelf"]
    assert (shelf.entries, shelf.exits, shelf.occupancy_peak) == (1, 1, 3)
    assert (shelf.dwell_count, shelf.dwell_median_s) == (1, 12.0)
    assert [r.minute for r in minutes.flush()] == [int(T0 // 60) + 1] * 2


def test_the_store_merges_a_minute_written_twice_and_buckets_by_the_hour(tmp_path: Path) -> None:
    store = FootfallStore(f"sqlite:///{tmp_path / 'footfall.db'}")
    m = int(T0 // 60)
    store.write([MinuteRow("cam", "shelf", m, 2, 1, 10, 1.0, 2, 1, 10.0)])
    store.write([MinuteRow("cam", "shelf", m, 1, 0, 30, 3.0, 5, 3, 30.0)])  # a reconnect
    store.write([MinuteRow("cam", "shelf", m + 61, 4, 4, 60, 2.0, 3, 0, 0.0)])  # next hour
    store.write([MinuteRow("cam", "other", m, 9, 9, 60, 9.0, 9, 9, 9.0)])
    first, second = store.buckets("cam", "shelf", m, m + 180, 60)
    assert (first.minute, first.entries, first.exits, first.occupancy_peak) == (m, 3, 1, 5)
    assert first.occupancy_avg == pytest.approx((1.0 * 10 + 3.0 * 30) / 40)
    assert first.dwell_count == 4 and first.dwell_median_s == pytest.approx(25.0)
    assert (second.minute, second.entries) == (m + 60, 4)
    assert store.buckets("cam", "shelf", m + 1, m + 60, 60) == []  # [start, end)
    live = [  # an open stream's minute, not stored yet: counted in its bucket, or a new one
        MinuteRow("cam", "shelf", m + 5, 2, 0, 40, 5.0, 6, 0, 0.0),
        MinuteRow("cam", "shelf", m + 130, 1, 0, 10, 1.0, 1, 0, 0.0),
    ]
    merged = with_rows([first, second], live, m, m + 180, 60)
    assert [(b.minute, b.entries, b.occupancy_peak) for b in merged] == [
        (m, 5, 6),
        (m + 60, 4, 3),
        (m + 120, 1, 1),
    ]
    assert merged[0].occupancy_avg == pytest.approx((1.0 * 10 + 3.0 * 30 + 5.0 * 40) / 80)
    assert store.purge(m + 1) == 2
    assert [b.minute for b in store.buckets("cam", "shelf", 0, m + 180, 60)] == [m + 60]
    store.close()


def _request(**fields: object) -> vision_pb2.GetFootfallRequest:
    request = vision_pb2.GetFootfallRequest(camera_id="cam", zone="shelf")
    start = Timestamp(seconds=int(T0))
    request.start.CopyFrom(start)
    for name, value in fields.items():
        if isinstance(value, Timestamp | Duration):
            getattr(request, name).CopyFrom(value)
        elif value is None:
            request.ClearField(name)  # type: ignore[arg-type]
        else:
            setattr(request, name, value)
    return request


def test_footfall_requests_are_checked_field_by_field() -> None:
    cameras = {"cam": Camera(zones=(SHELF,))}
    ok = footfall_query(_request(), cameras, T0 + 7200)
    assert (ok.bucket_minutes, ok.end_minute - ok.start_minute) == (60, 120)
    cases: list[tuple[dict[str, object], grpc.StatusCode, str]] = [
        ({"camera_id": ""}, grpc.StatusCode.INVALID_ARGUMENT, "camera_id: required"),
        ({"camera_id": "x"}, grpc.StatusCode.NOT_FOUND, "camera_id: 'x' is not configured (cam)"),
        ({"zone": "till"}, grpc.StatusCode.NOT_FOUND, "zone: camera 'cam' has no zone 'till'"),
        ({"start": None}, grpc.StatusCode.INVALID_ARGUMENT, "start: required"),
        ({"end": Timestamp(seconds=int(T0) - 60)}, grpc.StatusCode.INVALID_ARGUMENT, "after"),
        ({"end": Timestamp(seconds=-5)}, grpc.StatusCode.INVALID_ARGUMENT, "end: not a time"),
        ({"bucket": Duration(seconds=90)}, grpc.StatusCode.INVALID_ARGUMENT, "whole number"),
        ({"bucket": Duration(seconds=-60)}, grpc.StatusCode.INVALID_ARGUMENT, "whole number"),
        ({"bucket": Duration(seconds=40 * 86400)}, grpc.StatusCode.INVALID_ARGUMENT, "31 days"),
        ({"bucket": Duration(seconds=60)}, grpc.StatusCode.INVALID_ARGUMENT, "at most 10000"),
    ]
    for fields, code, words in cases:
        now = T0 + 7200 if "bucket" not in fields else T0 + 400 * 86400
        with pytest.raises(FootfallQueryError) as caught:
            footfall_query(_request(**fields), cameras, now)
        assert (caught.value.code, words in str(caught.value)) == (code, True), caught.value


def test_people_still_inside_when_the_stream_ends_leave_in_its_last_minute() -> None:
    """Their exits and dwell count, as those of people who walk out of view do: a shop
    that closes its camera at night had entries with no exits."""
    minutes = FootfallMinutes("cam")
    someone = Track(1, "v1", 0, 0, None)  # type: ignore[arg-type]
    minutes.observe(update(1, 1, [ZoneChange(True, SHELF, someone)]), T0 + 1)
    minutes.leave([ZoneChange(False, SHELF, someone, dwell_s=40.0)], T0 + 41)
    shelf = {r.zone: r for r in minutes.flush()}["shelf"]
    assert (shelf.entries, shelf.exits, shelf.dwell_count, shelf.dwell_median_s) == (1, 1, 1, 40.0)
    # a stream closed before any frame was counted still has a minute to put them in
    fresh = FootfallMinutes("cam")
    fresh.leave([ZoneChange(False, SHELF, someone, dwell_s=5.0)], T0 + 130)
    (row,) = fresh.flush()
    assert (row.minute, row.exits) == (int(T0 // 60) + 2, 1)
