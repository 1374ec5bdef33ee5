"""A live camera's frames timed by the stream's own presentation times, not by when
they happen to decode.

Live sources deliver in bursts: an HLS camera's 2 s segment decodes in a fraction
of a second and then nothing comes for 2 s; RTSP flushes a backlog after network
jitter. Timed by arrival, a burst is a couple of frames and a gap, which tracking
takes for everyone leaving. Here a frame's presentation time (PTS) is put on the
wall clock by an anchor taken once per session, and the reader holds a frame that
came early until that time, so a burst plays out as it was filmed; a late frame is
due at once. Host clock steps during a session change nothing (the anchor is taken
once and then moved only by arrivals on the monotonic clock, on which waiting is too).

A camera's clock is not ours: crystals differ by tens of ppm, and a camera that
stamps 30 fps while it films 29.97 is 0.1 % off. Anchored once, its frames would come
ever later than due (until, 3 hours in, lateness passed `max_gap_s` and time jumped:
everyone left) or ever earlier (held ever longer: the socket read ever later, the
analysis ever further behind live). So the anchor is slewed, at most `SLEW` (5 ms a
second of stream, far below what tracking notices), so that the latest frame of the
last `WINDOW_S` of stream is due as it came: a burst's first frame is on time and the
rest are held, a steady camera's frames are due as they come, and jitter only adds
lateness, which the window's latest frame takes up. Held frames hide how early they
came (the next frame stays in the socket until the reader is free): while every frame
of the window was held, the stream is ahead of us, and the anchor moves earlier until
the latest one is on time again (an HLS camera thus comes, slowly, as close to live as
its segments allow). Slewed, times still only go forward, and a gap stays as long as
it was, within `SLEW`.

The anchor is taken again when the timeline breaks: a new session (reconnect),
a frame without PTS (timed by its arrival instead), PTS going backwards or jumping
forward by more than `max_gap_s`, or a frame due more than `max_gap_s` ago or
`max_lead_s` from now (the stream stalled, or a drift faster than `SLEW`). A new
anchor is the host clock, unless that was stepped back to before the last time given:
then it is that time plus the time really passed since, so one camera's times only go
forward.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

MAX_LEAD_S = 60.0  # HLS reads 3 segments ahead (up to 30 s with 10 s segments)
MIN_STEP_S = 0.001  # a new anchor is at least this far after the last time given
SLEW = 0.005  # the anchor moves at most this many seconds per second of stream
WINDOW_S = 10.0  # of stream, whose latest frame is due as it came (HLS: 1 to 5 segments)


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
        self.slewed = 0.0  # seconds the anchor was moved since taken (+: later)
        self._anchor: _Anchor | None = None
        self._position = 0.0  # the last frame's place on the timeline
        self._last_due = 0.0  # and when it was due (monotonic)
        # the window's frames as (position, arrival - position), the latest arrival
        # first: each has come later than every frame after it
        self._arrivals: deque[tuple[float, float]] = deque()

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
            self.slewed, self._position = 0.0, position
            self._arrivals.clear()
        if not by_arrival:  # (timed by arrival, a frame is due as it comes)
            self._slew(position, monotonic)
        self._position = position
        offset = position - anchor.position + self.slewed
        self.last_t, self._last_due = anchor.wall + offset, anchor.monotonic + offset
        return Timing(self.last_t, self._last_due)

    def _slew(self, position: float, monotonic: float) -> None:
        """Moves the anchor, by SLEW for each second of stream since the last frame at
        most, toward the latest arrival of the window (this frame's included)."""
        assert self._anchor is not None
        arrivals, arrival = self._arrivals, monotonic - position
        while arrivals and arrivals[-1][1] <= arrival:
            arrivals.pop()
        arrivals.append((position, arrival))
        while arrivals[0][0] < position - WINDOW_S:
            arrivals.popleft()
        due = self._anchor.monotonic - self._anchor.position + self.slewed
        most = SLEW * (position - self._position)
        self.slewed += min(most, max(-most, arrivals[0][1] - due))

    def _broken(self, position: float, monotonic: float) -> bool:
        assert self._anchor is not None
        step = position - self._position
        due = self._anchor.monotonic + (position - self._anchor.position) + self.slewed
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
