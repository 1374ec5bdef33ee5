"""Redaction of a call's recognition events before anything leaves the service.

Every event of a call (partials, finals, their words and entities) passes through
its CallRedaction on the way out, so the caller of StreamingRecognize, WatchCalls'
watchers, the console and the signals all see the same redacted text. The clear
text stays in the recognizer's memory only (the decoder's prompt), for the call's
length. A phone number or e-mail the customer gives is taken out of the final
before it is redacted and handed to the signals as an identity key (when the
deployment allows contacts as keys): leads needs the value to link the caller,
and it travels only in the signal's keys, never in text, evidence or logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from percept.understanding.redaction import PLACEHOLDERS, Redacted, Redactor, apply
from percept.v1 import common_pb2, speech_pb2

PARTIAL = speech_pb2.RecognitionEvent.EVENT_TYPE_PARTIAL
FINAL = speech_pb2.RecognitionEvent.EVENT_TYPE_FINAL
CARD_WINDOW_S = 60.0  # a security code or expiry date follows a card within this
CONTACTS = ("phone", "email")


@dataclass(frozen=True)
class Contact:
    type: str  # "phone" or "email"
    value: str  # normalised: E.164, lower-case address
    confidence: float


@dataclass
class CallRedaction:
    redactor: Redactor
    contacts_as_keys: bool = True
    # when each channel last spoke of a card (seconds into the call)
    card_said: dict[int, float] = field(default_factory=dict)

    def apply(self, event: speech_pb2.RecognitionEvent) -> list[Contact]:
        """Redacts the event in place; a final's contacts, for its signals."""
        contacts = self._contacts(event) if event.type == FINAL else []
        if not self.redactor or event.type not in (PARTIAL, FINAL):
            return contacts
        start = event.start_offset.ToNanoseconds() / 1e9
        context = start - self.card_said.get(event.channel, -1e9) < CARD_WINDOW_S
        draft = event.type == PARTIAL
        spans = self.redactor.find(event.transcript, card_context=context, draft=draft)
        if event.type == FINAL and (
            any(s.type.startswith("card") for s in spans)
            or self.redactor.mentions_card(event.transcript)
        ):
            self.card_said[event.channel] = event.end_offset.ToNanoseconds() / 1e9
        clear = event.transcript
        redacted = apply(clear, spans)
        event.transcript = redacted.text
        if event.stable_prefix:
            prefix = self.redactor.find(event.stable_prefix, card_context=context, draft=True)
            event.stable_prefix = apply(event.stable_prefix, prefix).text
        if event.type == FINAL:
            self._entities(event, redacted, context)
            self._words(event, clear, redacted)
        return contacts

    def _contacts(self, event: speech_pb2.RecognitionEvent) -> list[Contact]:
        if not self.contacts_as_keys:
            return []
        return [
            Contact(e.type, e.normalized_value, e.confidence)
            for e in event.entities
            if e.type in CONTACTS
        ]

    def _entities(
        self, event: speech_pb2.RecognitionEvent, redacted: Redacted, context: bool
    ) -> None:
        """Entities that held a redacted value go; the rest move with the text, and
        each redaction is an entity of its own: its type and place, no value."""
        kept = []
        for e in event.entities:
            if e.type in CONTACTS and e.type in self.redactor.kinds:
                continue
            said = f"{e.text} {e.normalized_value}"
            if self.redactor.find(said, card_context=context) or any(
                s.start < e.end_char and e.start_char < s.end for s in redacted.originals
            ):
                continue
            moved = common_pb2.Entity()
            moved.CopyFrom(e)
            moved.start_char = redacted.position(e.start_char)
            moved.end_char = redacted.position(e.end_char)
            kept.append(moved)
        kept += [
            common_pb2.Entity(
                type=s.type,
                text=PLACEHOLDERS[s.type],
                start_char=s.start,
                end_char=s.end,
                confidence=1.0,
                redacted=True,
            )
            for s in redacted.spans
        ]
        del event.entities[:]
        event.entities.extend(sorted(kept, key=lambda e: e.start_char))

    def _words(self, event: speech_pb2.RecognitionEvent, clear: str, redacted: Redacted) -> None:
        """The words of a redacted span become one word, the placeholder, timed from
        the first to the last; a word that cannot be placed in the text is redacted
        on its own (digits in it are not kept on trust)."""
        if not redacted.originals or not event.words:
            return
        words = list(event.words)
        out: list[speech_pb2.WordInfo] = []
        placed: dict[int, speech_pb2.WordInfo] = {}  # span index -> its placeholder word
        cursor = 0
        for w in words:
            text = w.word.strip()
            at = clear.find(text, cursor) if text else -1
            if at < 0:
                alone = self.redactor.find(text, card_context=True, draft=True)
                if alone or any(ch.isdigit() for ch in text):
                    w.word = " [redacted]"
                out.append(w)
                continue
            cursor = at + len(text)
            hit = next(
                (
                    i
                    for i, s in enumerate(redacted.originals)
                    if s.start < at + len(text) and at < s.end
                ),
                None,
            )
            if hit is None:
                out.append(w)
            elif hit in placed:
                placed[hit].end_offset.CopyFrom(w.end_offset)
            else:
                w.word = " " + PLACEHOLDERS[redacted.originals[hit].type]
                placed[hit] = w
                out.append(w)
        del event.words[:]
        event.words.extend(out)
