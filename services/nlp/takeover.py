"""A salesperson taking a chat over: claim, answer, release, and the visitor who
waits too long.

The visitor's side (the assistant going quiet, the salesperson who is gone) is in
the Assistant's turn; this is the salesperson's side, and what the visitor is
told when it changes, said in the visitor's language like every prompt. A claim, a
salesperson's message and a release renew the visitor's session like a visitor's
turn: a conversation with a salesperson does not expire while the salesperson writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from percept.nlp.apertium import ApertiumError
from percept.nlp.dialogue import Assistant, Session
from percept.nlp.inbox import (
    BOT,
    CLAIMED,
    SALESPERSON,
    ChatInbox,
    Message,
    Said,
    Takeover,
)
from percept.nlp.sessions import SessionExpiredError, SessionNotFoundError
from percept.nlp.translation import UnsupportedPairError

log = logging.getLogger("percept.nlp.takeover")


@dataclass
class ChatView:
    """A chat as the inbox shows it: who has it, the visitor's session, its transcript."""

    takeover: Takeover
    session: Session | None  # None once the session has expired and been purged
    connected: bool = False  # the salesperson who has it has their inbox open
    messages: list[Message] = field(default_factory=list)


@dataclass(frozen=True)
class Promise:
    session: Session
    waited_s: float
    messages: list[Message]


class Takeovers:
    def __init__(self, assistant: Assistant, inbox: ChatInbox) -> None:
        self.assistant, self.inbox = assistant, inbox

    def _session(
        self, session_id: str, *, expired_ok: bool = False, missing_ok: bool = False
    ) -> Session:
        """Raises SessionNotFoundError / SessionExpiredError for a chat there is not; with
        `expired_ok`, a chat whose visitor left is empty (with `missing_ok`, one purged)."""
        try:
            return Session.from_state(self.assistant.store.get(session_id))
        except SessionExpiredError:
            if not expired_ok:
                raise
            return Session(session_id)
        except SessionNotFoundError:
            if not missing_ok:
                raise
            return Session(session_id)

    def view(self, session_id: str, *, transcript: bool = True) -> ChatView:
        session = self._session(session_id, expired_ok=True)
        chat = self.inbox.takeover(session_id)
        messages = self.inbox.messages(session_id) if transcript else []
        return ChatView(chat, session, self._connected(chat), messages)

    def chats(self, statuses: Sequence[str], limit: int) -> list[ChatView]:
        found = self.inbox.chats(statuses, limit, self.assistant.store.ttl_s)
        views = []
        for chat in found:
            try:
                session: Session | None = self._session(chat.session_id, expired_ok=True)
            except LookupError:
                session = None
            views.append(ChatView(chat, session, self._connected(chat)))
        return views

    def _connected(self, chat: Takeover) -> bool:
        """The salesperson who has the chat has their inbox open."""
        return chat.status == CLAIMED and self.inbox.connected(chat.salesperson)

    def claim(self, session_id: str, salesperson: str) -> ChatView:
        """Raises ClaimedByOtherError when another salesperson has it."""
        session = self._session(session_id)
        text = self._say(session, "salesperson_joined", salesperson=salesperson)
        said = [Said(BOT, text, language=session.language)]
        self.inbox.claim(session_id, salesperson, said, renew=self._renewal(session_id))
        return self.view(session_id)

    def release(self, session_id: str, salesperson: str) -> ChatView:
        """Raises NotClaimedError unless `salesperson` has it."""
        session = self._session(session_id, expired_ok=True)
        text = self._say(session, "salesperson_left", salesperson=salesperson)
        said = [Said(BOT, text, language=session.language)]
        self.inbox.release(session_id, salesperson, said, renew=self._renewal(session_id))
        return self.view(session_id)

    def send(self, session_id: str, salesperson: str, text: str) -> tuple[Session, Message]:
        """Raises NotClaimedError unless `salesperson` has it, SessionExpiredError after
        the visitor has left."""
        session = self._session(session_id)
        said = Said(SALESPERSON, text, author=salesperson)
        renew = self._renewal(session_id)
        return session, self.inbox.send(session_id, salesperson, said, renew=renew)

    def _renewal(self, session_id: str) -> Callable[[Connection], object]:
        """Renews the visitor's session in the takeover's transaction (not one expired)."""
        store = self.assistant.store
        return lambda conn: store.renew(conn, session_id)

    def promise_callbacks(self, wait_s: float) -> list[Promise]:
        """Every chat that has waited longer than `wait_s` is promised a callback (and
        asked for a contact it has not given); this replica's share of them."""
        done = []
        for chat in self.inbox.overdue(wait_s):
            try:
                session = self._session(chat.session_id, expired_ok=True, missing_ok=True)
                text = self._say(session, "callback_promise")
                if not session.qualification.known("contact"):
                    text += " " + self._say(session, "leave_contact")
                said = [Said(BOT, text, language=session.language)]
                messages = self.inbox.promise_callback(chat, said)
            except SQLAlchemyError:
                raise  # the database is away: every chat would fail alike
            except Exception:  # one chat's trouble must not keep the others waiting
                log.exception("callback promise failed", extra={"session_id": chat.session_id})
                continue
            if messages is not None:
                waited = messages[-1].sent_at - (chat.waiting_since or messages[-1].sent_at)
                done.append(Promise(session, waited, messages))
        return done

    def _say(self, session: Session, prompt: str, **values: str) -> str:
        """The prompt in the visitor's language; in English when translation fails (a
        claim or a promise must not wait for the translator)."""
        language = session.language or "en"
        try:
            text, _ = self.assistant.say(prompt, language, **values)
        except (ApertiumError, UnsupportedPairError):
            log.warning("prompt not translated", extra={"language": language, "prompt": prompt})
            text, _ = self.assistant.say(prompt, "en", **values)
        return text
