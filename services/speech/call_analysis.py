"""What every event of a call goes through, whoever carries the call: redaction
before anyone hears it, and what the call keeps for its end (the summary's turns,
the categories matched so far). A live call (StreamingRecognize, the gateway) and
a whole recording (Recognize) go through the same steps."""

from __future__ import annotations

from dataclasses import dataclass, field

from percept.speech.call_summary import CallSummarizer
from percept.speech.categorizing import category_event, final_of
from percept.speech.redacting import CallRedaction, Contact
from percept.understanding.call_categories import CallCategorizer, Categories
from percept.understanding.redaction import Redactor
from percept.v1 import speech_pb2

FINAL = speech_pb2.RecognitionEvent.EVENT_TYPE_FINAL


@dataclass
class CallAnalysis:
    redaction: CallRedaction = field(default_factory=lambda: CallRedaction(Redactor(())))
    summarizer: CallSummarizer = field(default_factory=lambda: CallSummarizer("", 2.0))
    categorizer: CallCategorizer = field(default_factory=lambda: Categories(()).for_call())

    def event(
        self, event: speech_pb2.RecognitionEvent
    ) -> tuple[list[Contact], list[speech_pb2.RecognitionEvent]]:
        """Redacts the event in place and keeps it for the summary; a final's contacts
        (for its signals) and the CATEGORY events it completed."""
        contacts = self.redaction.apply(event)
        self.summarizer.add(event)
        if event.type != FINAL:
            return contacts, []
        found = [category_event(m, event) for m in self.categorizer.add(final_of(event))]
        for category in found:
            self.summarizer.add(category)
        return contacts, found

    def summary(self, heard_s: float) -> speech_pb2.CallSummary:
        return self.summarizer.summary(heard_s)
