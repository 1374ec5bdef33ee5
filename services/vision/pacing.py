"""A live camera's frames timed by the stream's own presentation times, not by when
they happen to decode.

Live sources deliver in bursts: an HLS camera's 2 s segment decodes in a fraction
of a second and then nothing comes for 2 s; RTSP flushes a backlog after network
jitter. Timed by arrival, a burst is a couple of frames and a gap, which tracking
takes for everyone leaving. Here a frame's presentation time (PTS) is put on the
wall clock by an anchor taken once per session, and the reader holds a frame that
came early until that time, so a burst plays out as it was filmed; a late frame is
due at once. Host clock steps during a session change nothing (the anchor is taken
once, and waiting is on the monotonic clock).

The anchor is taken again when the timeline breaks: a new session (reconnect),
a frame without PTS (timed by its arrival instead), PTS going backwards or jumping
forward by more than `max_gap_s`, or a frame due more than `max_gap_s` ago or
`max_lead_s` from now (a camera clock drifting from ours). A new anchor is the host
clock, unless that was stepped back to before the last time given: then it is that
time plus the time really passed since, so one camera's times only go forward.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LEAD_S = 60.0  # HLS reads 3 segments ahead (up to 30 s with 10 s segments)
MIN_STEP_S = 0.001  # a new anchor is at least this far after the last time given


@dataclass(frozen=True)
class Timing:
    t: float  # the frame's time on the wall clock (what tracking and signals see)
    due: float  # when to hand it on, on time.monotonic()'s clock: now or later


@dataclass(frozen=True)
class _Anchor:
    position: float  # on the session's timeline: PTS, or the arrival for frames without
    monotonic: float
    wall: float
    by_arrival: bool


class PresentationClock:
    """One camera's frame times, across its sessions; used by its reader thread only."""

    def __init__(self, max_gap_s: float, max_lead_s: float = MAX_LEAD_S) -> None:
        self.max_gap_s, self.max_lead_s = max_gap_s, max_lead_s
        self.last_t: float | None = None  # the newest time given
        self.anchors = 0  # times the clock was (re)anchored
        self._anchor: _Anchor | None = None
        self._position = 0.0  # the last frame's place on the timeline
        self._last_due = 0.0  # and when it was due (monotonic)

    def new_session(self) -> None:
        """The stream was opened again: its timeline starts afresh."""
        self._anchor = None

    def time(self, pts: float | None, monotonic: float, wall: float) -> Timing:
        """The time of a frame that came out of the decoder at `monotonic` / `wall`."""
        by_arrival = pts is None
        position = monotonic if pts is None else pts
        anchor = self._anchor
        if anchor is None or anchor.by_arrival != by_arrival or self._broken(position, monotonic):
            wall = self._after_last(wall, monotonic)
            anchor = self._anchor = _Anchor(position, monotonic, wall, by_arrival)
            self.anchors += 1
        self._position = position
        offset = position - anchor.position
        self.last_t, self._last_due = anchor.wall + offset, anchor.monotonic + offset
        return Timing(self.last_t, self._last_due)

    def _broken(self, position: float, monotonic: float) -> bool:
        assert self._anchor is not None
        step = position - self._position
        due = self._anchor.monotonic + (position - self._anchor.position)
        return (
            step < 0
            or step > self.max_gap_s
            or monotonic - due > self.max_gap_s
            or due - monotonic > self.max_lead_s
        )

    def _after_last(self, wall: float, monotonic: float) -> float:
        """The host clock now, unless it was stepped back to before the last time given:
        then that time plus the time really passed since (on the monotonic clock)."""
        if self.last_t is None:
            return wall
        return max(wall, self.last_t + max(MIN_STEP_S, monotonic - self._last_due))
