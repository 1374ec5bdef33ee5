"""What a chat turn tells leads: intents, each qualification slot filled, contacts given.

Every signal carries the chat session id and any keys the visitor gave (widget
keys, e-mail, phone), so leads joins the chat to the same person's calls and visits.
"""

from __future__ import annotations

from functools import partial

from percept.nlp.dialogue import Reply, Session
from percept.nlp.inbox import ASSISTANT, VISITOR
from percept.runtime.signals import leading_number, new_signal
from percept.v1 import common_pb2

CHAT = common_pb2.SOURCE_CHAT
CONTACTS = ("email", "phone")
NUMERIC = ("quantity", "budget")


def identity_of(session: Session) -> common_pb2.IdentityKeys:
    identity = common_pb2.IdentityKeys(chat_session_id=session.id)
    for key, value in session.visitor.items():
        setattr(identity, key, value)
    for key in CONTACTS:
        value = session.qualification.slots[key].value
        if value:
            setattr(identity, key, value)
    return identity


def chat_signals(reply: Reply, evidence: str, page_url: str = "") -> list[common_pb2.Signal]:
    identity = identity_of(reply.session)
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
        # the visitor's own words are the lead's, the English reading beside them
        signals.append(
            signal(
                common_pb2.SIGNAL_KIND_QUALIFICATION_SLOT,
                name=name,
                value=slot.original or slot.value,
                numeric_value=leading_number(slot.value) if name in NUMERIC else 0.0,
                confidence=slot.confidence,
                attributes={
                    "language": reply.language,
                    **({"english": slot.value} if slot.original else {}),
                    **({"page_url": page_url} if page_url else {}),
                },
            )
        )
    if reply.status != ASSISTANT and reply.visitor_seq:  # a person reads this chat now
        signals.append(chat_message_signal(reply.session, VISITOR, evidence))
    return signals


def chat_message_signal(
    session: Session, role: str, text: str, salesperson: str = ""
) -> common_pb2.Signal:
    """A message of a chat with a salesperson, for the lead's timeline."""
    return new_signal(
        CHAT,
        common_pb2.SIGNAL_KIND_CHAT_MESSAGE,
        identity=identity_of(session),
        name=role,
        value=text[:4000],  # leads' limit on a value
        evidence=text,
        campaign_id=session.campaign_id,
        attributes={
            "language": session.language,
            **({"salesperson": salesperson} if salesperson else {}),
        },
    )


def callback_signal(session: Session, waited_s: float) -> common_pb2.Signal:
    """The chat promised a callback: leads puts the lead first in the follow-ups."""
    return new_signal(
        CHAT,
        common_pb2.SIGNAL_KIND_CALLBACK_PROMISED,
        identity=identity_of(session),
        value=f"waited {waited_s:.0f} s for a salesperson; nobody took the chat",
        campaign_id=session.campaign_id,
        attributes={"language": session.language},
    )
