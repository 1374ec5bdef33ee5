"""LocalAgreement-2 (Macháček et al., 2023): a word is stable once two consecutive
hypotheses over growing audio agree on it, so partial text never flickers back."""

from __future__ import annotations

import re


def word_key(word: str) -> str:
    """A word as hypotheses compare it: case and punctuation aside."""
    return re.sub(r"[^\w']", "", word.lower())


class LocalAgreement:
    def __init__(self) -> None:
        self.stable: list[str] = []
        self.previous: list[str] = []

    @property
    def stable_text(self) -> str:
        return " ".join(self.stable)

    def update(self, hypothesis: str) -> tuple[str, str]:
        """(stable prefix, full text) after a new hypothesis. The stable prefix only grows."""
        words = hypothesis.split()
        # The draft continues the stable prefix; should it rewrite a word, even its
        # punctuation, ours stands.
        n = len(self.stable)
        words = self.stable + words[n:]
        agreed = n
        while (
            agreed < min(len(words), len(self.previous))
            and word_key(words[agreed]) == word_key(self.previous[agreed])
            and word_key(words[agreed])
        ):
            agreed += 1
        # The last word may still be cut mid-way by the chunk edge: never commit it.
        agreed = min(agreed, len(words) - 1) if agreed > n else agreed
        self.stable = words[:agreed] if agreed > n else self.stable
        self.previous = words
        return self.stable_text, " ".join(words)
