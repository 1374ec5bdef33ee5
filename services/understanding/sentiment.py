"""How a speaker feels in an utterance: positive, neutral or negative.

No registry package ships sentiment weights, so this is trained the way intents
are: logistic regression over the all-MiniLM-L6-v2 sentence embeddings the suite
already loads, on the labelled call utterances of `sentiment_examples.yaml`
(trained at load, well under a second). `sentiment_heldout.yaml`, written apart
and never trained on, is what `percept sentiment evaluate` scores it on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import yaml

from percept.understanding import data
from percept.understanding.labelled import Embedder, Example, Vectors, precision_recall

LABELS = ("positive", "neutral", "negative")


@dataclass(frozen=True)
class SentimentMatch:
    label: str  # positive, neutral, negative
    score: float  # P(positive) - P(negative), in [-1, 1]
    confidence: float  # the probability of the label


def parse_sentiment_examples(content: Any, name: str = "sentiment examples") -> list[Example]:
    if not isinstance(content, dict) or set(content) != set(LABELS):
        got = ", ".join(map(str, content)) if isinstance(content, dict) else type(content).__name__
        raise ValueError(f"{name}: a mapping of {', '.join(LABELS)} to utterances (got {got})")
    out = []
    for label, texts in content.items():
        if not isinstance(texts, list) or not texts:
            raise ValueError(f"{name}: {label} must be a non-empty list of utterances")
        for number, text in enumerate(texts, 1):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{name}: {label}[{number}] is not an utterance")
            out.append(Example(text.strip(), label))
    return out


def training_examples() -> tuple[Example, ...]:
    return _parsed("sentiment_examples.yaml")


def held_out_examples() -> tuple[Example, ...]:
    return _parsed("sentiment_heldout.yaml")


@cache
def _parsed(name: str) -> tuple[Example, ...]:
    return tuple(parse_sentiment_examples(yaml.safe_load(data.read(name)), name))


class SentimentClassifier:
    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.model: Any = None

    def train(self, examples: Sequence[Example]) -> SentimentClassifier:
        from sklearn.linear_model import LogisticRegression

        vectors = self.embedder.embed([e.text for e in examples])
        # C by 4-fold cross-validation on the training examples: accuracy 0.92 at
        # C=1 and 10, 0.90 at 100 (the held-out file is for `evaluate` only)
        self.model = LogisticRegression(C=10.0, max_iter=5000, class_weight="balanced")
        self.model.fit(vectors, [e.label for e in examples])
        return self

    def predict(self, texts: Sequence[str], vectors: Vectors | None = None) -> list[SentimentMatch]:
        if not texts:
            return []
        if vectors is None:
            vectors = self.embedder.embed(texts)
        rows = self.model.predict_proba(vectors)
        column = {str(c): i for i, c in enumerate(self.model.classes_)}
        out = []
        for row in rows:
            best = int(np.argmax(row))
            score = float(row[column["positive"]] - row[column["negative"]])
            out.append(
                SentimentMatch(str(self.model.classes_[best]), round(score, 3), float(row[best]))
            )
        return out


@dataclass(frozen=True)
class LabelScore:
    label: str
    precision: float
    recall: float
    support: int


def evaluate(
    predicted: Sequence[str], held_out: Sequence[Example]
) -> tuple[list[LabelScore], float]:
    """Precision and recall per label, and accuracy."""
    scores = []
    for label in LABELS:
        precision, recall, support = precision_recall(
            [e.label == label for e in held_out], [p == label for p in predicted]
        )
        scores.append(LabelScore(label, precision, recall, support))
    right = sum(p == e.label for p, e in zip(predicted, held_out, strict=True))
    return scores, right / len(held_out) if held_out else 0.0
