"""A live camera's frame times from its presentation times: bursts spread out as filmed,
and every break in the timeline (no PTS, PTS backwards or leaping, a reconnect after the
host clock stepped back) handled without a time ever going backwards."""

from __future__ import annotations

import numpy as np
import pytest

from percept.vision.pacing import MIN_STEP_S, PresentationClock

WALL = 1_700_000_000.0  # the host clock when the first frame came
MONO = 5_000.0  # time.monotonic() then


def test_a_burst_is_timed_and_due_as_it_was_filmed() -> None:
    """A 2 s HLS segment decoded in 0.1 s: the times are its PTS, due over 2 s."""
    clock = PresentationClock(max_gap_s=10)
    timings = [clock.time(30.0 + i / 10, MONO + i / 200, WALL + i / 200) for i in range(20)]
    assert np.allclose(np.diff([x.t for x in timings]), 0.1)
    assert timings[0].t == WALL and timings[-1].t == pytest.approx(WALL + 1.9, abs=1e-5)
    assert np.allclose([x.due - MONO for x in timings], [x.t - WALL for x in timings])
    late = clock.time(32.0, MONO + 4.0, WALL + 4.0)  # the next segment, 2 s late: due now
    assert late.t == pytest.approx(WALL + 2.0, abs=1e-5) and late.due < MONO + 4.0
    assert clock.anchors == 1


def test_frames_without_pts_are_timed_by_their_arrival() -> None:
    clock = PresentationClock(max_gap_s=10)
    first = clock.time(None, MONO, WALL)
    second = clock.time(None, MONO + 0.1, WALL + 5.0)  # the host clock stepped meanwhile
    assert first.t == WALL and second.t == pytest.approx(WALL + 0.1, abs=1e-5)
    assert first.due == MONO and second.due == pytest.approx(MONO + 0.1, abs=1e-5)
    stamped = clock.time(7.0, MONO + 0.2, WALL + 5.1)  # PTS from now on: a new timeline
    assert stamped.t == WALL + 5.1 and clock.anchors == 2


def test_pts_backwards_or_leaping_forward_anchor_again_and_time_goes_on() -> None:
    clock = PresentationClock(max_gap_s=10)
    for i in range(10):
        clock.time(100.0 + i / 10, MONO + i / 10, WALL + i / 10)
    back = clock.time(3.0, MONO + 1.0, WALL + 1.0)  # the encoder restarted
    assert back.t == WALL + 1.0 and back.due == MONO + 1.0
    leap = clock.time(3.0 + 5000, MONO + 1.1, WALL + 1.1)  # a PTS jump of 83 minutes
    assert leap.t == WALL + 1.1 and leap.due == MONO + 1.1
    assert clock.anchors == 3


def test_a_camera_clock_drifting_from_ours_is_anchored_again() -> None:
    clock = PresentationClock(max_gap_s=10, max_lead_s=60)
    clock.time(0.0, MONO, WALL)
    behind = clock.time(1.0, MONO + 12.0, WALL + 12.0)  # 11 s late: more than max_gap_s
    assert behind.t == WALL + 12.0 and clock.anchors == 2
    clock.time(2.0, MONO + 12.5, WALL + 12.5)
    assert clock.anchors == 2  # 0.5 s early: waited for, not anchored again


def test_a_reconnect_after_the_host_clock_stepped_back_never_goes_back_in_time() -> None:
    clock = PresentationClock(max_gap_s=10)
    last = [clock.time(i / 10, MONO + i / 10, WALL + i / 10).t for i in range(10)][-1]
    clock.new_session()
    stepped = WALL - 3600  # NTP stepped the host clock back an hour meanwhile
    again = [clock.time(i / 10, MONO + 3 + i / 10, stepped + 3 + i / 10).t for i in range(5)]
    assert again[0] == pytest.approx(last + 2.1, abs=1e-5)  # as much later as it really was
    assert np.allclose(np.diff(again), 0.1)
    clock.new_session()  # reopened at once: never the same time twice
    reopened = clock.time(0.0, MONO + 3.4, stepped + 3.4).t
    assert reopened == pytest.approx(again[-1] + MIN_STEP_S, abs=1e-5)
    clock.new_session()  # the host clock put right again: followed
    assert clock.time(0.0, MONO + 9, WALL + 9).t == pytest.approx(WALL + 9, abs=0.002)
    clock.new_session()
    assert clock.time(0.0, MONO + 10, WALL + 3600).t == WALL + 3600  # a step forward too
