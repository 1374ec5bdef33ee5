"""Labelled utterances and the embedder the classifiers (intents, sentiment) learn over."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):  # MiniLMEmbedder, or anything giving unit vectors
    def embed(self, texts: Sequence[str]) -> Vectors:
        """One unit-length vector per text."""
        ...


@dataclass(frozen=True)
class Example:
    text: str
    label: str


def precision_recall(truth: Sequence[bool], said: Sequence[bool]) -> tuple[float, float, int]:
    """(precision, recall, support) of one label: whether each example has it, and
    whether it was said to."""
    hits = sum(t and s for t, s in zip(truth, said, strict=True))
    precision = hits / sum(said) if sum(said) else 0.0
    recall = hits / sum(truth) if sum(truth) else 0.0
    return precision, recall, sum(truth)
