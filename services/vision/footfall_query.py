"""GetFootfall's request checked (each mistake named with its field) and its answer built."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc

from percept.v1 import vision_pb2
from percept.vision.cameras import Camera
from percept.vision.footfall import MinuteRow
from percept.vision.results import duration

DEFAULT_BUCKET_MIN = 60
MAX_BUCKET_MIN = 31 * 24 * 60
MAX_BUCKETS = 10_000  # a year of hours fits; a year of minutes does not
MAX_YEAR_S = 253402300799  # 9999-12-31T23:59:59Z


class FootfallQueryError(ValueError):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class FootfallQuery:
    camera_id: str
    zone: str
    start_minute: int
    end_minute: int
    bucket_minutes: int


def _invalid(message: str) -> FootfallQueryError:
    return FootfallQueryError(grpc.StatusCode.INVALID_ARGUMENT, message)


def footfall_query(
    request: vision_pb2.GetFootfallRequest, cameras: Mapping[str, Camera], now: float
) -> FootfallQuery:
    camera_id, zone = request.camera_id.strip(), request.zone.strip()
    if not camera_id:
        raise _invalid("camera_id: required")
    camera = cameras.get(camera_id)
    if camera is None:
        known = ", ".join(sorted(cameras)) or "none"
        raise FootfallQueryError(
            grpc.StatusCode.NOT_FOUND, f"camera_id: {camera_id!r} is not configured ({known})"
        )
    zones = [z.name for z in camera.zones]
    if zone and zone not in zones:
        raise FootfallQueryError(
            grpc.StatusCode.NOT_FOUND,
            f"zone: camera {camera_id!r} has no zone {zone!r} "
            f"({', '.join(zones) or 'no zones'}; empty for the whole view)",
        )
    if not request.HasField("start"):
        raise _invalid("start: required (the first moment to count from)")
    for name in ("start", "end"):
        stamp = getattr(request, name)
        if request.HasField(name) and not (0 <= stamp.seconds <= MAX_YEAR_S):
            raise _invalid(f"{name}: not a time between 1970 and 9999")
    start = request.start.seconds + request.start.nanos / 1e9
    end = request.end.seconds + request.end.nanos / 1e9 if request.HasField("end") else now
    if end <= start:
        raise _invalid("end: must be after start")
    bucket_s = request.bucket.seconds if request.HasField("bucket") else DEFAULT_BUCKET_MIN * 60
    if request.bucket.nanos or bucket_s <= 0 or bucket_s % 60:
        raise _invalid(f"bucket: {bucket_s} s is not a whole number of minutes")
    bucket = bucket_s // 60
    if bucket > MAX_BUCKET_MIN:
        raise _invalid(f"bucket: at most {MAX_BUCKET_MIN // 1440} days")
    start_minute, end_minute = int(start // 60), int(-(-end // 60))
    count = -(-(end_minute - start_minute) // bucket)
    if count > MAX_BUCKETS:
        raise _invalid(
            f"bucket: {count} buckets of {bucket} min between start and end; at most "
            f"{MAX_BUCKETS} (ask for larger buckets or a shorter span)"
        )
    return FootfallQuery(camera_id, zone, start_minute, end_minute, bucket)


def footfall_message(query: FootfallQuery, buckets: Sequence[MinuteRow]) -> vision_pb2.Footfall:
    answer = vision_pb2.Footfall(
        camera_id=query.camera_id, zone=query.zone, bucket=duration(query.bucket_minutes * 60)
    )
    for b in buckets:
        item = answer.buckets.add(
            entries=b.entries,
            exits=b.exits,
            occupancy_avg=round(b.occupancy_avg, 3),
            occupancy_peak=b.occupancy_peak,
            dwell_count=b.dwell_count,
            dwell_median=duration(b.dwell_median_s),
        )
        item.start.FromSeconds(b.minute * 60)
    return answer
