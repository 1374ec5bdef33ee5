"""Protobuf messages of the chats a salesperson can take over."""

from __future__ import annotations

from collections import OrderedDict

from google.protobuf.timestamp_pb2 import Timestamp

from percept.nlp.dialogue import Session
from percept.nlp.inbox import ASSISTANT, BOT, CALLBACK, CLAIMED, SALESPERSON, VISITOR, WAITING
from percept.nlp.inbox import Message as Line
from percept.nlp.signals import identity_of
from percept.nlp.takeover import ChatView
from percept.v1 import nlp_pb2

STATUS = {
    ASSISTANT: nlp_pb2.CHAT_STATUS_ASSISTANT,
    WAITING: nlp_pb2.CHAT_STATUS_WAITING,
    CLAIMED: nlp_pb2.CHAT_STATUS_CLAIMED,
    CALLBACK: nlp_pb2.CHAT_STATUS_CALLBACK,
}
STATUS_OF = {number: name for name, number in STATUS.items()}
ROLE = {
    VISITOR: nlp_pb2.CHAT_ROLE_VISITOR,
    BOT: nlp_pb2.CHAT_ROLE_ASSISTANT,
    SALESPERSON: nlp_pb2.CHAT_ROLE_SALESPERSON,
}


def _time(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def chat_message(line: Line) -> nlp_pb2.ChatMessage:
    return nlp_pb2.ChatMessage(
        seq=line.seq,
        session_id=line.session_id,
        role=ROLE[line.role],
        author=line.author,
        text=line.text,
        sent_at=_time(line.sent_at),
        language_code=line.language,
    )


def qualification(session: Session) -> list[nlp_pb2.QualificationSlot]:
    return [
        nlp_pb2.QualificationSlot(
            name=name,
            value=slot.value,
            filled=slot.filled,
            confidence=slot.confidence,
            original=slot.original,
        )
        for name, slot in session.qualification.slots.items()
    ]


def live_chat(view: ChatView) -> nlp_pb2.LiveChat:
    chat, session = view.takeover, view.session
    message = nlp_pb2.LiveChat(
        session_id=chat.session_id,
        status=STATUS[chat.status],
        salesperson=chat.salesperson,
        salesperson_connected=view.connected,
        handoff_reason=chat.reason,
        waiting_since=_time(chat.waiting_since),
        last_message_at=_time(view.messages[-1].sent_at if view.messages else chat.changed_at),
        messages=[chat_message(m) for m in view.messages],
    )
    if session is not None:
        message.language_code = session.language
        message.visitor.CopyFrom(identity_of(session))
        message.product = session.product
        message.qualification.extend(qualification(session))
    return message


def changed_chat(line: Line) -> nlp_pb2.LiveChat:
    """The chat's state as a message of its transcript left it (a watch's change event)."""
    return nlp_pb2.LiveChat(
        session_id=line.session_id,
        status=STATUS[line.status],
        salesperson=line.salesperson,
        language_code=line.language,
        last_message_at=_time(line.sent_at),
    )


class ChatStates:
    """The (status, salesperson) a watch last told of each chat, for the chats most
    recently heard of: a watch of every chat stays open for days (the console's), and
    one entry per chat ever seen would grow with them. A chat forgotten is told of
    again with its next message, which costs one event."""

    def __init__(self, kept: int = 10_000) -> None:
        self.kept = kept
        self._states: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def changed(self, session_id: str, state: tuple[str, str]) -> bool:
        """Records the chat's state; True if the watch has not told this one."""
        known = self._states.get(session_id)
        self._states[session_id] = state
        self._states.move_to_end(session_id)
        if len(self._states) > self.kept:
            self._states.popitem(last=False)
        return known != state
