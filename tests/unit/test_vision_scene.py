"""Tracking and zones over time: the real ByteTrack fed boxes whose path we know."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest

from percept.vision.cameras import Camera, Zone
from percept.vision.detection import Objects
from percept.vision.scene import CROWD_ZONE, Scene, SceneUpdate

W, H = 1000, 500
STEP = 0.1  # seconds between frames
LEFT = Zone(
    name="left", kind="product", product="phone", polygon=((0, 0), (0.5, 0), (0.5, 1), (0, 1))
)
RIGHT = Zone(
    name="right",
    kind="queue",
    polygon=((0.5, 0), (1, 0), (1, 1), (0.5, 1)),
    queue_min_wait_s=3.0,
    crowd_alert=2,
)


def camera(**overrides: object) -> Camera:
    values: dict[str, object] = {"zones": (LEFT, RIGHT), "density_grid": (1, 2), "crowd_hold_s": 0}
    values.update(overrides)
    return Camera(**values)


def people(*feet_x: float, score: float = 0.8) -> Objects:
    """A person box 100 px wide and 300 tall per foot position (their feet at y=450)."""
    boxes = np.array([[x - 50, 150, x + 50, 450] for x in feet_x], np.float32).reshape(-1, 4)
    return Objects(boxes, np.full(len(feet_x), score, np.float32), np.zeros(len(feet_x), np.int64))


def run(scene: Scene, frames: Iterable[Objects], start: float = 0.0) -> list[SceneUpdate]:
    return [scene.update(o, W, H, start + i * STEP) for i, o in enumerate(frames)]


def events(updates: list[SceneUpdate]) -> list[tuple[str, str, int]]:
    return [
        ("enter" if c.entered else "exit", c.zone.name, c.track.track_id)
        for u in updates
        for c in u.changes
    ]


def test_a_person_walking_across_keeps_one_id_and_gets_enter_exit_and_dwell() -> None:
    scene = Scene(camera(), person_class=0)
    # 3 s walking from x=100 to x=900 (8 px per frame: boxes overlap frame to frame).
    path = [100 + 8 * i for i in range(101)]
    updates = run(scene, (people(x) for x in path))
    ids = {t.track_id for u in updates for t in u.people}
    assert ids == {1}
    assert events(updates) == [("enter", "left", 1), ("enter", "right", 1), ("exit", "left", 1)]
    exit_left = next(c for u in updates for c in u.changes if not c.entered)
    # Entered on the first confirmed frame (t=0.1), last inside where x < 500: frame 49.
    assert exit_left.dwell_s == pytest.approx(49 * STEP - STEP, abs=1e-6)
    # The exit is counted once the person has been outside for exit_grace_s (1 s).
    exit_frame = next(i for i, u in enumerate(updates) if any(not c.entered for c in u.changes))
    assert exit_frame * STEP - 49 * STEP == pytest.approx(1.0, abs=STEP + 1e-6)


def test_jitter_on_a_zone_edge_does_not_flap() -> None:
    scene = Scene(camera(), person_class=0)
    path = [490 + (20 if i % 2 else 0) for i in range(30)]  # feet at 490 / 510, every frame
    updates = run(scene, (people(x) for x in path))
    assert sorted(events(updates)) == [("enter", "left", 1), ("enter", "right", 1)]


def test_a_short_occlusion_keeps_the_id_and_the_zone() -> None:
    scene = Scene(camera(), person_class=0)
    seen = [people(200 + 5 * i) for i in range(20)]
    hidden = [Objects.empty()] * 15  # 1.5 s behind a pillar, less than lost_s (2 s)
    back = [people(300 + 5 * i) for i in range(10)]
    updates = run(scene, [*seen, *hidden, *back])
    assert {t.track_id for u in updates for t in u.people} == {1}
    assert events(updates) == [("enter", "left", 1)]
    assert [u.occupancy[0].people for u in updates[19:21]] == [1, 0]  # not counted while hidden
    assert updates[-1].occupancy[0].people == 1


def test_someone_gone_longer_than_an_occlusion_leaves_with_their_dwell() -> None:
    scene = Scene(camera(), person_class=0)
    updates = run(scene, [*[people(200)] * 31, *[Objects.empty()] * 25])
    assert events(updates) == [("enter", "left", 1), ("exit", "left", 1)]
    exit_left = next(c for u in updates for c in u.changes if not c.entered)
    assert exit_left.dwell_s == pytest.approx(3.0 - STEP, abs=1e-6)
    assert scene.tracks == {}


def test_queue_length_counts_only_those_waiting_long_enough() -> None:
    scene = Scene(camera(), person_class=0)
    first = run(scene, [people(700)] * 40)  # 4 s alone at the counter
    both = run(scene, [people(700, 850)] * 10, start=4.0)
    assert first[-1].occupancy[1].queue_length == 1
    right = both[-1].occupancy[1]
    assert (right.zone, right.people, right.queue_length) == ("right", 2, 1)


def test_crowding_alerts_once_per_episode() -> None:
    scene = Scene(camera(crowd_alert=3), person_class=0)
    calm = run(scene, [people(700)] * 5)
    crowd = run(scene, [people(600, 750, 900)] * 5, start=0.5)
    assert not any(u.crowded for u in calm)
    alerts = [a for u in crowd for a in u.crowded]
    assert sorted(alerts) == [(CROWD_ZONE, 3), ("right", 3)]  # at once (hold 0 s), then not again
    relief = run(scene, [people(700)] * 5, start=1.0)
    again = run(scene, [people(600, 750, 900)] * 5, start=1.5)
    assert not any(u.crowded for u in relief)
    assert ("right", 3) in [a for u in again for a in u.crowded]


def test_crowding_must_last_the_hold_time() -> None:
    scene = Scene(camera(crowd_hold_s=1.0), person_class=0)
    updates = run(scene, [people(700, 850)] * 20)
    first = next(i for i, u in enumerate(updates) if u.crowded)
    confirmed = next(i for i, u in enumerate(updates) if len(u.people) == 2)
    assert (first - confirmed) * STEP == pytest.approx(1.0, abs=1e-6)


def test_density_follows_where_people_stand_and_fades() -> None:
    scene = Scene(camera(density_half_life_s=1.0), person_class=0)
    updates = run(scene, [people(200, 300)] * 81)  # 8 s: eight half-lives
    assert updates[-1].density.shape == (1, 2)
    assert updates[-1].density[0, 0] == pytest.approx(2.0, abs=0.02)
    assert updates[-1].density[0, 1] == pytest.approx(0.0)
    later = run(scene, [Objects.empty()] * 10, start=8.1)  # to t = 9 s: one half-life
    assert later[-1].density[0, 0] == pytest.approx(1.0, abs=0.02)


def test_other_objects_are_reported_untracked() -> None:
    scene = Scene(camera(), person_class=0)
    objects = people(200)
    mixed = Objects(
        np.concatenate([objects.boxes, [[600, 300, 700, 400]]]).astype(np.float32),
        np.array([0.8, 0.9], np.float32),
        np.array([0, 56], np.int64),  # a person and a chair
    )
    updates = run(scene, [mixed] * 3)
    assert updates[-1].object_tracks.tolist() == [1, 0]
    assert len(updates[-1].people) == 1


def test_closing_the_stream_ends_every_visit() -> None:
    scene = Scene(camera(), person_class=0)
    run(scene, [people(200, 800)] * 21)
    closing = scene.close()
    assert sorted((c.zone.name, round(c.dwell_s, 6)) for c in closing) == [
        ("left", 1.9),
        ("right", 1.9),
    ]


DOOR = Zone(name="door", kind="line", line=((0.5, 0.1), (0.5, 0.95)), inside="right")


def test_a_line_counts_each_crossing_once_even_with_feet_jittering_on_it() -> None:
    """A vertical line at x=500 (drawn top to bottom, so its right is the image's left)."""
    scene = Scene(camera(zones=(DOOR,)), person_class=0)
    jitter = [500 + d for d in (-6, 7, -5, 8, -7, 6, -4, 9)]  # on the line: within the margin
    path = [200 + 10 * i for i in range(30)] + jitter + [520 + 10 * i for i in range(30)]
    path += list(reversed(path))  # and back again
    updates = run(scene, (people(x) for x in path))
    assert {t.track_id for u in updates for t in u.people} == {1}
    # from the image's left (inside: right of a line drawn downwards) to its right: an exit
    assert events(updates) == [("exit", "door", 1), ("enter", "door", 1)]
    last = next(o for o in updates[-1].occupancy if o.zone == "door")
    assert (last.entries, last.exits, last.people) == (1, 1, 0)


def test_a_track_first_seen_beyond_the_line_or_going_round_it_has_not_crossed() -> None:
    short = Zone(name="door", kind="line", line=((0.5, 0.1), (0.5, 0.5)))  # ends above the feet
    scene = Scene(camera(zones=(short,)), person_class=0)
    updates = run(scene, (people(200 + 10 * i) for i in range(60)))  # feet at y=0.9: below it
    assert events(updates) == []
    scene = Scene(camera(zones=(DOOR,)), person_class=0)
    updates = run(scene, (people(700 + 5 * i) for i in range(20)))  # appears on one side
    assert events(updates) == []
