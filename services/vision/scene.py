"""One camera's view over time: people tracked, zones entered and left, dwell, queues, crowds.

People are tracked with ByteTrack (Roboflow `trackers`), fed each frame's
capture time so dropped frames do not confuse it. A person is in a zone when
the bottom centre of their box (their feet) is. Leaving needs `exit_grace_s`
outside, so a box jittering on a zone's edge does not flap; a track lost for
less than `lost_s` (an occlusion) keeps its id and its zones.

A line zone counts crossings: a track's side of the line changes only once its
feet are more than `line_margin` (of the frame's diagonal) past it, so feet
jittering on the line count once; a side change beyond the line's ends (walking
round it) counts nothing. A track first seen on one side has not crossed yet.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import shapely

from percept.vision.cameras import Camera, Zone
from percept.vision.detection import Floats, Objects

CROWD_ZONE = "*"  # crowding of the whole frame


@dataclass(frozen=True)
class Tuning:
    """Tracker settings, tuned on NanoDet's person scores (0.3-0.8 on real photos)."""

    high_confidence: float = 0.5  # ByteTrack's first association stage
    activation: float = 0.5  # a new track needs this much
    consecutive_frames: int = 2  # frames before a track gets an id
    min_iou: float = 0.1
    lost_s: float = 2.0  # an occlusion shorter than this keeps the id
    exit_grace_s: float = 1.0  # outside this long before an exit counts
    line_margin: float = 0.02  # of the frame's diagonal: how far past a line is across


@dataclass
class Track:
    track_id: int
    visitor_id: str  # ephemeral: a new one per track, never linked across visits by itself
    first_seen: float
    last_seen: float
    box: Floats
    entered: dict[str, float] = field(default_factory=dict)  # zone -> time of entry
    last_inside: dict[str, float] = field(default_factory=dict)
    sides: dict[str, int] = field(default_factory=dict)  # line -> +1 in, -1 out
    face_identity_id: str = ""  # set when the face matched an enrolled, consenting visitor
    next_face_check: float = 0.0
    face_checks: int = 0  # how often the face was looked at without a match
    reported: bool = False  # leads has had a signal about this visitor


@dataclass(frozen=True)
class ZoneChange:
    entered: bool
    zone: Zone
    track: Track
    dwell_s: float = 0.0  # exits only


@dataclass(frozen=True)
class Occupancy:
    zone: str
    people: int  # a line: entries less exits (never below 0)
    queue_length: int
    entries: int = 0  # since the stream started
    exits: int = 0


@dataclass
class SceneUpdate:
    people: list[Track]  # tracked people seen in this frame
    objects: Objects  # everything detected, people included
    object_tracks: npt.NDArray[np.int64]  # track id per object (0: untracked)
    changes: list[ZoneChange]
    occupancy: list[Occupancy]
    density: Floats  # (rows, cols)
    crowded: list[tuple[str, int]]  # (zone, people) of crowding that started now


class Scene:
    def __init__(self, camera: Camera, person_class: int, tuning: Tuning = Tuning()) -> None:
        from trackers import ByteTrackTracker

        self.camera, self.person_class, self.tuning = camera, person_class, tuning
        self.tracker = ByteTrackTracker(
            lost_track_buffer=round(tuning.lost_s * 30),  # counted in 30 fps frames
            frame_rate=camera.frame_rate,
            track_activation_threshold=tuning.activation,
            minimum_consecutive_frames=tuning.consecutive_frames,
            minimum_iou_threshold=tuning.min_iou,
            high_conf_det_threshold=tuning.high_confidence,
        )
        self.tracks: dict[int, Track] = {}
        self.areas = [(zone, zone.shape) for zone in camera.zones if zone.kind != "line"]
        for _, shape in self.areas:
            shapely.prepare(shape)
        self.lines = [zone for zone in camera.zones if zone.kind == "line"]
        self.entries = {zone.name: 0 for zone in camera.zones}
        self.exits = {zone.name: 0 for zone in camera.zones}
        self.density = np.zeros(camera.density_grid, np.float32)
        self.last_t: float | None = None
        self.crowd_since: dict[str, float] = {}  # zone -> when its count reached the alert
        self.crowd_alerted: set[str] = set()

    def update(self, objects: Objects, width: int, height: int, t: float) -> SceneUpdate:
        import supervision as sv

        people = np.nonzero(objects.class_ids == self.person_class)[0]
        detections = sv.Detections(
            xyxy=objects.boxes[people].astype(np.float64),
            confidence=objects.scores[people],
            class_id=objects.class_ids[people],
            data={"index": people},
        )
        tracked = self.tracker.update(detections, timestamp=t)
        object_tracks = np.zeros(len(objects), np.int64)
        seen: list[Track] = []
        for box, tid, index in zip(
            tracked.xyxy,
            tracked.tracker_id if tracked.tracker_id is not None else [],
            tracked.data.get("index", []),
            strict=True,
        ):
            if tid < 0:  # not confirmed yet
                continue
            tid = int(tid) + 1  # the tracker counts from 0; the API's 0 means untracked
            track = self.tracks.get(tid)
            if track is None:
                track = self.tracks[tid] = Track(
                    tid, f"visit-{uuid.uuid4().hex[:16]}", t, t, box.astype(np.float32)
                )
            track.last_seen, track.box = t, box.astype(np.float32)
            object_tracks[int(index)] = tid
            seen.append(track)
        changes = self._zones(seen, width, height, t)
        changes += self._crossings(seen, width, height)
        changes += self._expire(t)
        for change in changes:
            (self.entries if change.entered else self.exits)[change.zone.name] += 1
        occupancy = self._occupancy(seen, t)
        self._decay_density(seen, width, height, t)
        return SceneUpdate(
            people=seen,
            objects=objects,
            object_tracks=object_tracks,
            changes=changes,
            occupancy=occupancy,
            density=self.density.copy(),
            crowded=self._crowding(occupancy, len(seen), t),
        )

    def close(self) -> list[ZoneChange]:
        """The stream ended: everyone still inside a zone leaves it now."""
        changes: list[ZoneChange] = []
        for track in self.tracks.values():
            changes += self._leave_all(track)
        self.tracks.clear()
        return changes

    # -- zones ------------------------------------------------------------------

    def _zones(self, seen: list[Track], width: int, height: int, t: float) -> list[ZoneChange]:
        if not seen or not self.areas:
            return []
        feet_x = np.array([(tr.box[0] + tr.box[2]) / 2 / width for tr in seen])
        feet_y = np.array([tr.box[3] / height for tr in seen])
        changes = []
        for zone, shape in self.areas:
            inside = shapely.contains_xy(shape, feet_x, feet_y)
            for track, is_in in zip(seen, inside, strict=True):
                name = zone.name
                if is_in:
                    if name not in track.entered:
                        track.entered[name] = t
                        changes.append(ZoneChange(True, zone, track))
                    track.last_inside[name] = t
                elif (
                    name in track.entered
                    and t - track.last_inside[name] >= self.tuning.exit_grace_s
                ):
                    changes.append(self._leave(track, zone))
        return changes

    def _crossings(self, seen: list[Track], width: int, height: int) -> list[ZoneChange]:
        changes = []
        margin = self.tuning.line_margin * math.hypot(width, height)
        for zone in self.lines:
            (x0, y0), (x1, y1) = ((x * width, y * height) for x, y in zone.line)
            dx, dy = x1 - x0, y1 - y0
            length = math.hypot(dx, dy)
            inward = 1 if zone.inside == "right" else -1
            for track in seen:
                fx, fy = (track.box[0] + track.box[2]) / 2 - x0, track.box[3] - y0
                across = (dx * fy - dy * fx) / length  # > 0: right of the line, as drawn
                if abs(across) <= margin:
                    continue  # on the line: the side it was on still holds
                side = inward if across > 0 else -inward
                before = track.sides.get(zone.name)
                track.sides[zone.name] = side
                along = (dx * fx + dy * fy) / (length * length)
                if before is not None and before != side and -0.05 <= along <= 1.05:
                    changes.append(ZoneChange(side > 0, zone, track))
        return changes

    def _leave(self, track: Track, zone: Zone) -> ZoneChange:
        entered = track.entered.pop(zone.name)
        left = track.last_inside.pop(zone.name)
        return ZoneChange(False, zone, track, dwell_s=max(0.0, left - entered))

    def _leave_all(self, track: Track) -> list[ZoneChange]:
        zones = {zone.name: zone for zone in self.camera.zones}
        return [self._leave(track, zones[name]) for name in list(track.entered)]

    def _expire(self, t: float) -> list[ZoneChange]:
        """Tracks lost for longer than an occlusion are gone: they leave their zones."""
        changes: list[ZoneChange] = []
        for tid, track in list(self.tracks.items()):
            if t - track.last_seen > self.tuning.lost_s:
                changes += self._leave_all(track)
                del self.tracks[tid]
        return changes

    def _occupancy(self, seen: list[Track], t: float) -> list[Occupancy]:
        result = []
        for zone in self.camera.zones:
            name = zone.name
            entries, exits = self.entries[name], self.exits[name]
            if zone.kind == "line":
                result.append(Occupancy(name, max(0, entries - exits), 0, entries, exits))
                continue
            inside = [tr for tr in seen if zone.name in tr.entered]
            queuing = (
                sum(1 for tr in inside if t - tr.entered[zone.name] >= zone.queue_min_wait_s)
                if zone.kind == "queue"
                else 0
            )
            result.append(Occupancy(name, len(inside), queuing, entries, exits))
        return result

    # -- density and crowding -----------------------------------------------------

    def _decay_density(self, seen: list[Track], width: int, height: int, t: float) -> None:
        rows, cols = self.camera.density_grid
        counts = np.zeros((rows, cols), np.float32)
        for track in seen:
            x = (track.box[0] + track.box[2]) / 2 / width
            y = track.box[3] / height
            counts[min(int(y * rows), rows - 1), min(int(x * cols), cols - 1)] += 1
        if self.last_t is None:
            self.density = counts
        else:
            keep = math.pow(0.5, max(0.0, t - self.last_t) / self.camera.density_half_life_s)
            self.density = self.density * keep + counts * (1 - keep)
        self.last_t = t

    def _crowding(self, occupancy: list[Occupancy], people: int, t: float) -> list[tuple[str, int]]:
        limits = {zone.name: zone.crowd_alert for zone in self.camera.zones if zone.crowd_alert}
        counts = {o.zone: o.people for o in occupancy}
        if self.camera.crowd_alert:
            limits[CROWD_ZONE], counts[CROWD_ZONE] = self.camera.crowd_alert, people
        started = []
        for zone, limit in limits.items():
            if counts[zone] < limit:
                self.crowd_since.pop(zone, None)
                self.crowd_alerted.discard(zone)
                continue
            since = self.crowd_since.setdefault(zone, t)
            if zone not in self.crowd_alerted and t - since >= self.camera.crowd_hold_s:
                self.crowd_alerted.add(zone)
                started.append((zone, counts[zone]))
        return started
