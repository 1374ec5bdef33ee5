"""What a final utterance tells leads about the caller."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from percept.runtime.signals import leading_number, new_signal
from percept.speech.categorizing import ROLE_NAMES, SENTIMENT_NAMES
from percept.speech.redacting import Contact
from percept.v1 import common_pb2, speech_pb2

SPEECH = common_pb2.SOURCE_SPEECH
# Entities worth a signal of their own: what the caller wants, and how much.
INTEREST = {"product", "money", "quantity", "datetime", "company"}


def caller_identity(config: speech_pb2.RecognitionConfig) -> common_pb2.IdentityKeys:
    identity = common_pb2.IdentityKeys()
    identity.CopyFrom(config.caller)
    if config.call_id:
        identity.call_id = config.call_id
    return identity


def utterance_signals(
    config: speech_pb2.RecognitionConfig,
    final: speech_pb2.RecognitionEvent,
    contacts: Sequence[Contact] = (),
) -> list[common_pb2.Signal]:
    """Signals of a final utterance (already redacted): its intents, the entities of
    an utterance with an intent, and any phone number or e-mail the caller gave (a
    contact captured links it to the caller's lead; `contacts` hold them, taken from
    the final before redaction). None when the call names nobody."""
    identity = caller_identity(config)
    if not identity.ListFields():
        return []
    signal = partial(
        new_signal,
        SPEECH,
        evidence=final.transcript,
        campaign_id=config.campaign_id,
        attributes={"call_id": config.call_id, "language": final.language_code},
    )
    signals = [
        signal(common_pb2.SIGNAL_KIND_INTENT, identity, name=i.name, confidence=i.confidence)
        for i in final.intents
    ]
    for e in final.entities:
        if e.type in INTEREST and final.intents:
            amount = leading_number(e.normalized_value) if e.type in ("money", "quantity") else 0.0
            signals.append(
                signal(
                    common_pb2.SIGNAL_KIND_ENTITY,
                    identity,
                    name=e.type,
                    value=e.normalized_value,
                    numeric_value=amount,
                    confidence=e.confidence,
                )
            )
    for c in contacts:
        keys = common_pb2.IdentityKeys()
        keys.CopyFrom(identity)
        setattr(keys, c.type, c.value)
        signals.append(
            signal(
                common_pb2.SIGNAL_KIND_CONTACT_CAPTURED, keys, name=c.type, confidence=c.confidence
            )
        )
    return signals


def _caller_side(summary: speech_pb2.CallSummary) -> speech_pb2.RoleSummary | None:
    """The customer's part of the call (the unnamed channel of a mono call)."""
    sides = {r.role: r for r in summary.roles}
    return sides.get(speech_pb2.CHANNEL_ROLE_CUSTOMER) or sides.get(
        speech_pb2.CHANNEL_ROLE_UNSPECIFIED
    )


def summary_words(summary: speech_pb2.CallSummary) -> str:
    """A call's summary as a salesperson reads it on the lead's timeline."""
    seconds = summary.duration.ToNanoseconds() / 1e9
    parts = [f"{int(seconds // 60)} min {seconds % 60:.0f} s"]
    for r in summary.roles:
        talk = r.talk_time.ToNanoseconds() / 1e9
        mood = f", {SENTIMENT_NAMES[r.sentiment]} {r.sentiment_score:+.2f}" if r.sentiment else ""
        parts.append(
            f"{ROLE_NAMES[r.role]} talked {talk:.0f} s at {r.words_per_minute:.0f} wpm{mood}"
        )
    quiet = summary.non_talk_time.ToNanoseconds() / 1e9
    parts.append(f"{summary.silences} silence(s) of {quiet:.0f} s in all")
    parts.append(f"{summary.interruptions} interruption(s)")
    if summary.categories:
        parts.append("categories: " + ", ".join(c.name for c in summary.categories))
    return "; ".join(parts)


def call_signals(
    config: speech_pb2.RecognitionConfig, summary: speech_pb2.CallSummary
) -> list[common_pb2.Signal]:
    """What a finished call tells leads about the caller: its summary, how the
    customer sounded over it, and the categories it met. Figures and category
    names only: no words of the call (they were in the finals' signals, redacted)."""
    identity = caller_identity(config)
    side = _caller_side(summary)
    if not identity.ListFields() or not summary.roles:
        return []
    figures = {
        "call_id": config.call_id,
        "duration_s": f"{summary.duration.ToNanoseconds() / 1e9:.1f}",
        "non_talk_s": f"{summary.non_talk_time.ToNanoseconds() / 1e9:.1f}",
        "silences": str(summary.silences),
        "interruptions": str(summary.interruptions),
    }
    for r in summary.roles:
        name = ROLE_NAMES[r.role]
        figures[f"{name}_talk_s"] = f"{r.talk_time.ToNanoseconds() / 1e9:.1f}"
        figures[f"{name}_wpm"] = f"{r.words_per_minute:.0f}"
        figures[f"{name}_interruptions"] = str(r.interruptions)

    def signal(kind: common_pb2.SignalKind.ValueType, **fields: Any) -> common_pb2.Signal:
        return new_signal(SPEECH, kind, identity, campaign_id=config.campaign_id, **fields)

    words = summary_words(summary)
    out = [signal(common_pb2.SIGNAL_KIND_CALL_SUMMARY, value=words, attributes=figures)]
    if side is not None and side.sentiment:
        feeling = SENTIMENT_NAMES[side.sentiment]
        out.append(
            signal(
                common_pb2.SIGNAL_KIND_CALL_SENTIMENT,
                value=feeling,
                numeric_value=side.sentiment_score,
                evidence=f"the customer sounded {feeling} over the call "
                f"({side.sentiment_score:+.2f}, trend {side.sentiment_trend:+.2f})",
                attributes={"call_id": config.call_id, "trend": f"{side.sentiment_trend:.3f}"},
            )
        )
    out += [
        signal(
            common_pb2.SIGNAL_KIND_CALL_CATEGORY,
            name=c.name,
            evidence=c.description,
            attributes={"call_id": config.call_id, "role": ROLE_NAMES[c.role]},
        )
        for c in summary.categories
    ]
    return out
