"""Protobuf messages as the JSON the console's pages read: names, not enum numbers."""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from percept.leads.identity import KEY_FIELDS
from percept.leads.scoring import CHANNEL_NAMES, class_name, stage_name
from percept.v1 import common_pb2, leads_pb2, nlp_pb2, speech_pb2, vision_pb2


def _enum_name(enum: Any, value: int, prefix: str) -> str:
    try:
        return str(enum.Name(value)).removeprefix(prefix).lower()
    except ValueError:
        return "unknown"


def time_json(stamp: Timestamp) -> str | None:
    """A timestamp as ISO 8601 (RFC 3339), or None when unset."""
    if not stamp.seconds and not stamp.nanos:
        return None
    return str(stamp.ToJsonString())


def lead_json(lead: leads_pb2.Lead) -> dict[str, Any]:
    return {
        "lead_id": lead.lead_id,
        "identity": {f: getattr(lead.identity, f) for f in KEY_FIELDS if getattr(lead.identity, f)},
        "score": round(lead.score, 4),
        "class": class_name(lead.lead_class),
        "stage": stage_name(lead.stage),
        "product_interest": lead.product_interest,
        "channels": [CHANNEL_NAMES.get(c, "other") for c in lead.channels],
        "qualification": dict(sorted(lead.qualification.items())),
        "signal_count": lead.signal_count,
        "created_at": time_json(lead.created_at),
        "updated_at": time_json(lead.updated_at),
        "last_signal_at": time_json(lead.last_signal_at),
        "next_follow_up_at": time_json(lead.next_follow_up_at),
        "next_follow_up_reason": lead.next_follow_up_reason,
        "next_follow_up_action": lead.next_follow_up_action,
        "next_follow_up_owner": lead.next_follow_up_owner,
        "next_follow_up_priority": lead.next_follow_up_priority,
        "next_follow_up_id": lead.next_follow_up_id,
        "timeline": [
            {
                "occurred_at": time_json(entry.occurred_at),
                "channel": CHANNEL_NAMES.get(entry.source, "other"),
                "kind": _enum_name(common_pb2.SignalKind, entry.kind, "SIGNAL_KIND_"),
                "summary": entry.summary,
                "follow_up_id": entry.follow_up_id,
            }
            for entry in lead.timeline
        ],
    }


def change_json(change: leads_pb2.LeadChange) -> dict[str, Any]:
    return {
        "type": _enum_name(leads_pb2.LeadChange.ChangeType, change.type, "CHANGE_TYPE_"),
        "lead": lead_json(change.lead),
        "changed_at": time_json(change.changed_at),
        "previous_class": class_name(change.previous_class),
        "previous_stage": stage_name(change.previous_stage),
    }


def explanation_json(explanation: leads_pb2.ScoreExplanation) -> dict[str, Any]:
    return {
        "score": round(explanation.score, 4),
        "class": class_name(explanation.lead_class),
        "model": explanation.model,
        "contributions": [
            {
                "feature": c.feature,
                "description": c.description,
                "value": c.value,
                "contribution": round(c.contribution, 4),
            }
            for c in explanation.contributions
        ],
    }


def reply_json(reply: nlp_pb2.ChatReply) -> dict[str, Any]:
    """What the widget shows: the reply, and whether a person takes over (no slot values);
    the transcript's numbers of the visitor's message and the reply, so the live stream
    does not show them twice."""
    return {
        "session_id": reply.session_id,
        "text": reply.text,
        "language_code": reply.language_code,
        "handoff": reply.handoff,
        "status": chat_status(reply.status),
        "salesperson": reply.salesperson,
        "visitor_seq": reply.visitor_seq,
        "reply_seq": reply.reply_seq,
    }


def chat_status(status: int) -> str:
    return _enum_name(nlp_pb2.ChatStatus, status, "CHAT_STATUS_")


def chat_message_json(message: nlp_pb2.ChatMessage) -> dict[str, Any]:
    return {
        "seq": message.seq,
        "session_id": message.session_id,
        "role": _enum_name(nlp_pb2.ChatRole, message.role, "CHAT_ROLE_"),
        "author": message.author,
        "text": message.text,
        "sent_at": time_json(message.sent_at),
    }


def live_chat_json(chat: nlp_pb2.LiveChat) -> dict[str, Any]:
    """A chat as the inbox lists it (with its transcript when the call gave one)."""
    return {
        "session_id": chat.session_id,
        "status": chat_status(chat.status),
        "salesperson": chat.salesperson,
        "salesperson_connected": chat.salesperson_connected,
        "handoff_reason": chat.handoff_reason,
        "language_code": chat.language_code,
        "waiting_since": time_json(chat.waiting_since) if chat.HasField("waiting_since") else None,
        "last_message_at": time_json(chat.last_message_at),
        "product": chat.product,
        "visitor": {f.name: v for f, v in chat.visitor.ListFields()},
        "qualification": [
            {"name": s.name, "value": s.value, "original": s.original}
            for s in chat.qualification
            if s.filled
        ],
        "messages": [chat_message_json(m) for m in chat.messages],
    }


def chat_event_json(event: nlp_pb2.ChatEvent) -> dict[str, Any]:
    """A WatchChats event: a message, or a chat's new status."""
    if event.HasField("message"):
        return {"type": "message", **chat_message_json(event.message)}
    return {"type": "status", **live_chat_json(event.chat)}


def widget_event_json(event: nlp_pb2.ChatEvent) -> dict[str, Any]:
    """What a visitor's widget may see of its own chat: messages and who answers."""
    if event.HasField("message"):
        m = event.message
        return {
            "type": "message",
            "seq": m.seq,
            "role": _enum_name(nlp_pb2.ChatRole, m.role, "CHAT_ROLE_"),
            "author": m.author,
            "text": m.text,
        }
    chat = event.chat
    return {"type": "status", "status": chat_status(chat.status), "salesperson": chat.salesperson}


def source_json(source: vision_pb2.CameraSource) -> dict[str, Any]:
    """A pulled camera's reader (its URL has no credentials: vision removed them)."""
    return {
        "url": source.url,
        "state": vision_pb2.SourceState.Name(source.state).removeprefix("SOURCE_STATE_").lower(),
        "frames_received": source.frames_received,
        "frames_analysed": source.frames_analysed,
        "frames_dropped": source.frames_dropped,
        "last_frame_at": time_json(source.last_frame_at),
        "last_error": source.last_error,
        "reconnects": source.reconnects,
    }


def camera_json(camera: vision_pb2.Camera) -> dict[str, Any]:
    return {
        "camera_id": camera.camera_id,
        "streaming": camera.streaming,
        "source": source_json(camera.source) if camera.HasField("source") else None,
        "zones": [
            {
                "name": z.name,
                "kind": z.kind,
                "product": z.product,
                "polygon": [[round(p.x, 4), round(p.y, 4)] for p in z.polygon],
                "inside": z.inside,
            }
            for z in camera.zones
        ],
    }


def footfall_json(footfall: vision_pb2.Footfall) -> list[dict[str, Any]]:
    return [
        {
            "start": time_json(b.start),
            "entries": b.entries,
            "exits": b.exits,
            "occupancy_avg": round(b.occupancy_avg, 2),
            "occupancy_peak": b.occupancy_peak,
            "dwell_count": b.dwell_count,
            "dwell_median_s": round(b.dwell_median.ToTimedelta().total_seconds(), 1),
        }
        for b in footfall.buckets
    ]


def view_json(view: vision_pb2.CameraView) -> dict[str, Any]:
    out = camera_json(view.camera)
    if not view.jpeg:
        return out | {"frame": None}
    r = view.result
    out["frame"] = {
        "image": "data:image/jpeg;base64," + base64.b64encode(view.jpeg).decode(),
        "width": view.frame_width,
        "height": view.frame_height,
        "sequence": r.sequence,
        "captured_at": time_json(r.captured_at),
        "people_count": r.people_count,
        "zones": {
            z.zone: {
                "people": z.people,
                "queue_length": z.queue_length,
                "entries": z.entries,
                "exits": z.exits,
            }
            for z in r.zones
        },
        "density": {"rows": r.density.rows, "cols": r.density.cols, "cells": list(r.density.cells)},
        "objects": [
            {
                "label": o.label,
                "track_id": o.track_id,
                "confidence": round(o.confidence, 3),
                "box": [o.box.x_min, o.box.y_min, o.box.x_max, o.box.y_max],
            }
            for o in r.objects
        ],
    }
    return out


def call_update_json(update: speech_pb2.CallUpdate) -> dict[str, Any]:
    """A live call's update for the calls page: who speaks (by role), what was said,
    which intents and entities; never audio, and the call carries no caller number."""
    call = update.call
    body: dict[str, Any] = {
        "type": _enum_name(speech_pb2.CallUpdate.UpdateType, update.type, "UPDATE_TYPE_"),
        "call": {
            "call_id": call.call_id,
            "source": call.source,
            "roles": [
                _enum_name(speech_pb2.ChannelRole, r, "CHANNEL_ROLE_") for r in call.channel_roles
            ],
            "campaign_id": call.campaign_id,
            "started_at": time_json(call.started_at),
        },
        "time": time_json(update.time),
    }
    if update.type == speech_pb2.CallUpdate.UPDATE_TYPE_ENDED:
        body["end_reason"] = update.end_reason
        if update.HasField("summary"):
            body["summary"] = summary_json(update.summary)
    if update.HasField("event"):
        event = update.event
        body["event"] = {
            "type": _enum_name(speech_pb2.RecognitionEvent.EventType, event.type, "EVENT_TYPE_"),
            "utterance": event.utterance_index,
            "channel": event.channel,
            "role": _enum_name(speech_pb2.ChannelRole, event.role, "CHANNEL_ROLE_"),
            "transcript": event.transcript,
            "language": event.language_code,
            "intents": [i.name for i in event.intents],
            "entities": [
                {"type": e.type, "value": e.normalized_value or e.text, "redacted": e.redacted}
                for e in event.entities
            ],
            "sentiment": _enum_name(common_pb2.Sentiment, event.sentiment, "SENTIMENT_"),
        }
        if event.HasField("category"):
            body["event"]["category"] = {
                "name": event.category.name,
                "description": event.category.description,
            }
    return body


def summary_json(summary: speech_pb2.CallSummary) -> dict[str, Any]:
    """A call's summary as the console shows it (seconds as numbers)."""

    def seconds(d: Duration) -> float:
        return round(d.ToNanoseconds() / 1e9, 2)

    return {
        "duration_s": seconds(summary.duration),
        "non_talk_s": seconds(summary.non_talk_time),
        "silences": summary.silences,
        "longest_silence_s": seconds(summary.longest_silence),
        "interruptions": summary.interruptions,
        "roles": [
            {
                "role": _enum_name(speech_pb2.ChannelRole, r.role, "CHANNEL_ROLE_"),
                "talk_s": seconds(r.talk_time),
                "utterances": r.utterances,
                "words_per_minute": round(r.words_per_minute, 1),
                "interruptions": r.interruptions,
                "sentiment": _enum_name(common_pb2.Sentiment, r.sentiment, "SENTIMENT_"),
                "sentiment_score": round(r.sentiment_score, 3),
                "sentiment_trend": round(r.sentiment_trend, 3),
            }
            for r in summary.roles
        ],
    }


def suggestion_json(s: leads_pb2.MergeSuggestion) -> dict[str, Any]:
    return {
        "suggestion_id": s.suggestion_id,
        "lead_ids": list(s.lead_ids),
        "key_type": s.key_type,
        "key_value": s.key_value,
        "reason": s.reason,
        "created_at": time_json(s.created_at),
        "decision": s.decision,
    }
