"""The understanding data files: packaged defaults, or an operator's own.

`taxonomy.yaml` (intents and their phrases), `intent_examples.yaml` (the
classifier's labelled utterances), `catalog.yaml` (products, companies) and
`sentiment_examples.yaml` / `sentiment_heldout.yaml` (labelled call utterances)
ship with the code. A directory set with `use_directory` (PERCEPT_UNDERSTANDING_DIR;
in Kubernetes the percept-understanding ConfigMap) overrides any of them, so a
sales team changes its intents and products without a new image.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

FILES = (
    "taxonomy.yaml",
    "intent_examples.yaml",
    "intent_heldout.yaml",
    "catalog.yaml",
    "sentiment_examples.yaml",
    "sentiment_heldout.yaml",
    "call_categories.yaml",
)
_directory: Path | None = None


def use_directory(directory: Path | None) -> None:
    """Reads later data from `directory` where it holds a file (call before serving)."""
    global _directory
    if directory is not None and not directory.is_dir():
        raise FileNotFoundError(f"understanding_dir: {directory} is not a directory")
    _directory = directory


def read(name: str) -> str:
    return _read(_directory, name)


def source(name: str) -> str:
    """Where `name` comes from, for logs and errors."""
    if _directory is not None and (_directory / name).is_file():
        return str(_directory / name)
    return f"packaged {name}"


@cache
def _read(directory: Path | None, name: str) -> str:
    if name not in FILES:
        raise KeyError(name)
    if directory is not None and (directory / name).is_file():
        return (directory / name).read_text()
    return resources.files("percept.understanding").joinpath(name).read_text()
