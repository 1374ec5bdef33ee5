"""Understanding as a service loads it: data files checked, classifier trained."""

from __future__ import annotations

import yaml

from percept.models import model_store
from percept.runtime.settings import Settings
from percept.understanding import data, sentiment
from percept.understanding.call_categories import Categories, CategoriesError, parse_categories
from percept.understanding.classifier import Understanding, default_examples, held_out_examples
from percept.understanding.entities import catalog
from percept.understanding.intents import default_rules

EMBEDDINGS = "all-minilm-l6-v2"  # sentence embeddings of the intent classifier


class UnderstandingDataError(ValueError):
    """A data file is malformed; the message names the file and the entry."""


def load_categories(settings: Settings) -> Categories:
    """The call categories, their intents checked against the taxonomy's."""
    data.use_directory(settings.understanding_dir)
    intents = known_intents()
    try:
        return parse_categories(
            data.read("call_categories.yaml"), data.source("call_categories.yaml"), intents
        )
    except CategoriesError as exc:
        raise UnderstandingDataError(str(exc)) from exc


def known_intents() -> set[str]:
    """The intents a final can carry: the taxonomy's and the classifier's labels."""
    return {rule.name for rule in default_rules()} | {e.label for e in default_examples()} - {
        "none"
    }


def load_understanding(settings: Settings, *, sentiment_too: bool = False) -> Understanding:
    """Intents and entities; with `sentiment_too` the sentiment classifier as well
    (speech reads every final's sentiment; chat does not, and skips its training)."""
    data.use_directory(settings.understanding_dir)
    for name, parse in (
        ("taxonomy.yaml", default_rules),
        ("intent_examples.yaml", default_examples),
        ("intent_heldout.yaml", held_out_examples),
        ("catalog.yaml", catalog),
        ("sentiment_examples.yaml", sentiment.training_examples),
        ("sentiment_heldout.yaml", sentiment.held_out_examples),
    ):
        try:
            parse()
        except (ValueError, yaml.YAMLError) as exc:
            raise UnderstandingDataError(f"{data.source(name)}: {exc}") from exc
    path = model_store(settings).resolve(EMBEDDINGS).path
    return Understanding.load(path, sentiment_too=sentiment_too)
