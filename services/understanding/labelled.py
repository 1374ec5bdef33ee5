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
