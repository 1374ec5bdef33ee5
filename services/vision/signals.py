"""What a camera tells leads: product interest (dwell), consenting visitors, crowding.

Only what sales can act on becomes a signal: a dwell over the zone's threshold
in a product zone, an enrolled visitor recognised (and returning), and crowding
around visitors leads already knows of. Passers-by create no lead. Signals
are keyed by the ephemeral visitor id, plus the face identity of a consenting
visitor, which is what links a visit to a lead.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

from percept.runtime.signals import new_signal
from percept.v1 import common_pb2
from percept.vision.scene import Track, ZoneChange

VISION = common_pb2.SOURCE_VISION
K = common_pb2


def visitor_keys(track: Track) -> common_pb2.IdentityKeys:
    return common_pb2.IdentityKeys(
        visitor_id=track.visitor_id, face_identity_id=track.face_identity_id
    )


def _signal(
    camera_id: str, at: datetime | None = None, **attributes: str
) -> partial[common_pb2.Signal]:
    return partial(
        new_signal, VISION, attributes={"camera_id": camera_id, **attributes}, occurred_at=at
    )


def dwell_signal(camera_id: str, change: ZoneChange, at: datetime) -> common_pb2.Signal | None:
    """A product-zone exit after at least the zone's dwell threshold, else None."""
    zone = change.zone
    if change.entered or zone.kind != "product" or change.dwell_s < zone.dwell_signal_s:
        return None
    return _signal(camera_id, at, zone_kind=zone.kind)(
        K.SIGNAL_KIND_DWELL,
        visitor_keys(change.track),
        name=zone.name,
        value=zone.product,
        numeric_value=round(change.dwell_s, 2),
        evidence=f"stayed {change.dwell_s:.0f} s in {zone.name} ({zone.product})",
    )


def face_signals(
    camera_id: str, track: Track, confidence: float, returning: bool, at: datetime
) -> list[common_pb2.Signal]:
    signal = _signal(camera_id, at)
    keys = visitor_keys(track)
    found = [
        signal(
            K.SIGNAL_KIND_FACE_SEEN,
            keys,
            confidence=confidence,
            evidence=f"enrolled visitor recognised on camera {camera_id}",
        )
    ]
    if returning:
        found.append(
            signal(
                K.SIGNAL_KIND_RETURNING_VISIT,
                keys,
                confidence=confidence,
                evidence=f"enrolled visitor back in the store (camera {camera_id})",
            )
        )
    return found


def crowding_signals(
    camera_id: str, zone: str, people: int, tracks: list[Track], at: datetime
) -> list[common_pb2.Signal]:
    signal = _signal(camera_id, at)
    return [
        signal(
            K.SIGNAL_KIND_CROWDING,
            visitor_keys(track),
            name=zone,
            numeric_value=float(people),
            evidence=f"{people} people in {'the store view' if zone == '*' else zone}",
        )
        for track in tracks
        if track.reported
    ]


def enrolment_signal(
    camera_id: str, face_identity_id: str, identity: common_pb2.IdentityKeys, consent: str
) -> common_pb2.Signal:
    """Links the new face identity to the lead's keys (the only place that link is kept)."""
    keys = common_pb2.IdentityKeys()
    keys.CopyFrom(identity)
    keys.face_identity_id = face_identity_id
    return _signal(camera_id, consent_reference=consent[:200])(
        K.SIGNAL_KIND_FACE_SEEN,
        keys,
        evidence="visitor enrolled with consent",
    )
