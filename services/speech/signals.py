"""What a final utterance tells leads about the caller."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from percept.runtime.signals import leading_number, new_signal
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
