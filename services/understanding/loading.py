"""Understanding as a service loads it: data files checked, classifier trained."""

from __future__ import annotations

import yaml

from percept.models import model_store
from percept.runtime.settings import Settings
from percept.understanding import data
from percept.understanding.classifier import Understanding, default_examples
from percept.understanding.entities import catalog
from percept.understanding.intents import default_rules

EMBEDDINGS = "all-minilm-l6-v2"  # sentence embeddings of the intent classifier


class UnderstandingDataError(ValueError):
    """A data file is malformed; the message names the file and the entry."""


def load_understanding(settings: Settings) -> Understanding:
    data.use_directory(settings.understanding_dir)
    for name, parse in (
        ("taxonomy.yaml", default_rules),
        ("intent_examples.yaml", default_examples),
        ("catalog.yaml", catalog),
    ):
        try:
            parse()
        except (ValueError, yaml.YAMLError) as exc:
            raise UnderstandingDataError(f"{data.source(name)}: {exc}") from exc
    return Understanding.load(model_store(settings).resolve(EMBEDDINGS).path)
