"""A channel's language when the call does not say (language "auto").

Whisper detects a language per utterance, and a short or noisy one is easily
heard as a neighbour (Spanish as Portuguese or Galician). So the channel decides
on its first confident utterance; an unsure utterance that disagrees is decoded
again in the channel's language, and two confident ones in a row that agree on
another language change it (the caller switched, or the first guess was wrong).
"""

from __future__ import annotations

CONFIDENT = 0.8  # Whisper's language probability above which a detection counts


class LanguageVote:
    def __init__(self, fixed: str | None) -> None:
        self.fixed = fixed  # the config's language: nothing to vote on
        self.decided: str | None = None
        self.dissent: str | None = None  # a confident other language, heard once

    @property
    def language(self) -> str | None:
        """What drafts and a re-decode use: the config's, or the channel's so far."""
        return self.fixed or self.decided

    def overrule(self, detected: str, probability: float) -> str | None:
        """The language to decode this utterance in again, or None to keep it."""
        if self.fixed or self.decided is None or detected == self.decided:
            return None
        return self.decided if probability < CONFIDENT else None

    def observe(self, language: str, probability: float) -> None:
        """A final's language (after any overruling) counts towards the decision."""
        if self.fixed or not language:
            return
        if self.decided is None:
            if probability >= CONFIDENT:
                self.decided = language
        elif language == self.decided:
            self.dissent = None
        elif probability >= CONFIDENT:
            if self.dissent == language:
                self.decided, self.dissent = language, None
            else:
                self.dissent = language
