"""Loading a transformers model folder from the model dir, shared by the translation
and answer-phrasing backends: float16 on a GPU, one error for a folder without a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_pretrained(
    auto_class: Any, folder: Path, device: str, what: str, kind: str
) -> tuple[Any, Any]:
    """(tokenizer, model) from a `save_pretrained` folder; float16 on a GPU, in eval mode.

    `auto_class` is e.g. AutoModelForSeq2SeqLM; `what` names the model and `kind` says
    what belongs in the folder, in the error raised when it holds no model.
    """
    import torch
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{what}: no config.json in {folder} (save {kind} there with save_pretrained)"
        )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    dtype = torch.float16 if device == "cuda" else torch.float32
    model = auto_class.from_pretrained(folder, dtype=dtype)
    return tokenizer, model.to(device).eval()
