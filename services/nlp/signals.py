"""What a chat turn tells leads: intents, each qualification slot filled, contacts given.

Every signal carries the chat session id and any keys the visitor gave (widget
keys, e-mail, phone), so leads joins the chat to the same person's calls and visits.
"""

from __future__ import annotations

from functools import partial

from percept.nlp.dialogue import Reply
from percept.runtime.signals import leading_number, new_signal
from percept.v1 import common_pb2

CHAT = common_pb2.SOURCE_CHAT
CONTACTS = ("email", "phone")
NUMERIC = ("quantity", "budget")


def identity_of(reply: Reply) -> common_pb2.IdentityKeys:
    session = reply.session
    identity = common_pb2.IdentityKeys(chat_session_id=session.id)
    for key, value in session.visitor.items():
        setattr(identity, key, value)
    for key in CONTACTS:
        value = session.qualification.slots[key].value
        if value:
            setattr(identity, key, value)
    return identity


def chat_signals(reply: Reply, evidence: str, page_url: str = "") -> list[common_pb2.Signal]:
    identity = identity_of(reply)
    signal = partial(
        new_signal,
        CHAT,
        identity=identity,
        evidence=evidence,
        campaign_id=reply.session.campaign_id,
        attributes={"language": reply.language, **({"page_url": page_url} if page_url else {})},
    )
    signals = [
        signal(common_pb2.SIGNAL_KIND_INTENT, name=i.name, confidence=i.confidence)
        for i in reply.intents
    ]
    for name, slot in reply.filled.items():
        if name in CONTACTS:
            signals.append(
                signal(
                    common_pb2.SIGNAL_KIND_CONTACT_CAPTURED, name=name, confidence=slot.confidence
                )
            )
            continue
        signals.append(
            signal(
                common_pb2.SIGNAL_KIND_QUALIFICATION_SLOT,
                name=name,
                value=slot.value,
                numeric_value=leading_number(slot.value) if name in NUMERIC else 0.0,
                confidence=slot.confidence,
            )
        )
    return signals
