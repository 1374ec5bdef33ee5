"""The earlier finals as Whisper's prefix: written as Whisper writes a window's
text, kept within faster-whisper's budget, and readable by every packaged model's
tokenizer (tiny.en's does not know the timestamp tokens until taught)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from percept.models import model_store
from percept.runtime.settings import Settings
from percept.speech.audio import SAMPLE_RATE
from percept.speech.backends import (
    PREFIX_TOKENS,
    FasterWhisperTranscriber,
    Said,
    _with_timestamp_tokens,
    timestamp,
    whisper_prefix,
)


def test_finals_are_written_as_whisper_writes_the_segments_of_a_window() -> None:
    said = [Said(0.0, 2.0, "Hello there."), Said(2.515, 4.0, " Yes. ")]
    # the first segment's <|0.00|> is faster-whisper's to write
    assert whisper_prefix(said) == " Hello there.<|2.00|><|2.52|> Yes.<|4.00|>"
    assert (timestamp(-0.5), timestamp(31.0)) == ("<|0.00|>", "<|30.00|>")


class WordTokens:
    """A tokenizer of one token per word, timestamps included."""

    def encode(self, text: str, add_special_tokens: bool = True) -> Any:
        return SimpleNamespace(ids=text.replace("|><|", "| <|").split())


def test_a_prefix_over_the_budget_loses_its_oldest_finals_and_their_audio() -> None:
    owner: Any = SimpleNamespace(takes_said=True, model=SimpleNamespace(hf_tokenizer=WordTokens()))
    audio = np.arange(12 * SAMPLE_RATE, dtype=np.float32)
    said = [
        Said(0.0, 5.0, "w " * 150),
        Said(6.0, 10.0, "x " * 100),
        Said(11.0, 12.0, "y"),
    ]
    kept, rest, offset = FasterWhisperTranscriber._fitting(owner, audio, said)
    assert offset == 6.0 and kept[0] == 6 * SAMPLE_RATE  # cut where the next final starts
    assert [(s.start, s.end) for s in rest] == [(0.0, 4.0), (5.0, 6.0)]
    assert len(WordTokens().encode(whisper_prefix(rest)).ids) < PREFIX_TOKENS

    short = [Said(0.0, 1.0, "fine")]
    assert FasterWhisperTranscriber._fitting(owner, audio, short) == (audio, short, 0.0)


def test_a_backend_that_cannot_be_told_the_finals_leaves_their_audio_out() -> None:
    owner: Any = SimpleNamespace(takes_said=False)
    audio = np.arange(5 * SAMPLE_RATE, dtype=np.float32)
    said = [Said(0.0, 1.0, "one"), Said(1.5, 3.0, "two")]
    kept, rest, offset = FasterWhisperTranscriber._fitting(owner, audio, said)
    assert (kept[0], len(kept), rest, offset) == (3 * SAMPLE_RATE, 2 * SAMPLE_RATE, (), 3.0)


def tokenizer(tmp_path: Path, model: str) -> Any:
    from tokenizers import Tokenizer

    path = model_store(Settings(data_dir=tmp_path)).resolve(model).path
    return Tokenizer.from_file(str(path / "tokenizer.json"))


def test_tiny_en_is_taught_the_timestamp_tokens_its_model_has(tmp_path: Path) -> None:
    tokens = tokenizer(tmp_path, "whisper-tiny.en")
    before = tokens.encode(" yes.<|1.20|>", add_special_tokens=False).ids
    assert len(before) > 3  # "<|1.20|>" read as text
    assert _with_timestamp_tokens(tokens)
    first = tokens.token_to_id("<|notimestamps|>") + 1
    assert tokens.encode(" yes.<|1.20|>", add_special_tokens=False).ids[-1] == first + 60
    assert _with_timestamp_tokens(tokens)  # taught once: asking again changes nothing


def test_a_tokenizer_whose_ids_would_not_be_the_models_is_not_taught() -> None:
    from tokenizers import Tokenizer, models

    tokens = Tokenizer(models.WordLevel({"<|notimestamps|>": 0, "x": 1, "[UNK]": 2}, "[UNK]"))
    assert not _with_timestamp_tokens(tokens)  # an id after <|notimestamps|> is taken


@pytest.mark.parametrize("model", ["whisper-tiny.en"])
def test_a_packaged_model_takes_the_finals_as_its_prefix(tmp_path: Path, model: str) -> None:
    path = model_store(Settings(data_dir=tmp_path)).resolve(model).path
    assert FasterWhisperTranscriber(path, device="cpu", cpu_threads=1).takes_said
