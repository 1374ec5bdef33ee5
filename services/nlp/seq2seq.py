"""Neural translation with transformers seq2seq models from the model dir (GPU nodes).

One folder per model, as `save_pretrained` writes it. The pairs come from the
model itself: a MarianMT tokenizer names its source and target language; a
multilingual one (M2M100 `__en__`, NLLB `eng_Latn`) has a token per language,
and the target is chosen by forcing that token first.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from percept.nlp.language import iso_639_1
from percept.nlp.pretrained import load_pretrained
from percept.runtime.devices import resolve_device

log = logging.getLogger(__name__)

_M2M_TOKEN = re.compile(r"^__([a-z]{2,3})__$")
_NLLB_TOKEN = re.compile(r"^([a-z]{3})_[A-Z][a-z]{3}$")
BATCH = 16
BEAMS = 4


@dataclass
class _Model:
    path: Path
    tokenizer: Any
    model: Any
    # ISO 639-1 → the model's own language token; empty for single-pair models
    tokens: dict[str, str] = field(default_factory=dict)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)  # src_lang is tokenizer state


def _language_tokens(tokenizer: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for token in tokenizer.all_special_tokens:
        match = _M2M_TOKEN.match(token) or _NLLB_TOKEN.match(token)
        code = iso_639_1(match.group(1)) if match else None
        if code is not None:
            found.setdefault(code, token)
    return found


class Seq2SeqBackend:
    name = "transformers"

    def __init__(self, model_dirs: Sequence[Path], device: str = "auto") -> None:
        from transformers import AutoModelForSeq2SeqLM

        self.device = device = resolve_device(device)
        self._models: list[_Model] = []
        for path in model_dirs:
            tokenizer, model = load_pretrained(
                AutoModelForSeq2SeqLM,
                path,
                device,
                f"translation model {path.name!r}",
                "a MarianMT, M2M100 or NLLB model",
            )
            loaded = _Model(path, tokenizer, model)
            source = tokenizer.init_kwargs.get("source_lang")
            target = tokenizer.init_kwargs.get("target_lang")
            if source and target:  # MarianMT: one direction
                pair = (iso_639_1(str(source)), iso_639_1(str(target)))
                if pair[0] and pair[1]:
                    loaded.pairs = [(pair[0], pair[1])]
            else:
                loaded.tokens = _language_tokens(tokenizer)
                loaded.pairs = list(itertools.permutations(sorted(loaded.tokens), 2))
            if not loaded.pairs:
                raise ValueError(
                    f"translation model {path.name!r}: cannot tell its languages (no "
                    "source_lang/target_lang in tokenizer_config.json, no language tokens)"
                )
            log.info("translation model %s: %d pairs on %s", path.name, len(loaded.pairs), device)
            self._models.append(loaded)

    def pairs(self) -> list[tuple[str, str]]:
        return sorted({pair for m in self._models for pair in m.pairs})

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:

        model = next(m for m in self._models if (source, target) in m.pairs)
        with model.lock:
            return self._generate(model, texts, source, target)

    def _generate(self, model: _Model, texts: Sequence[str], source: str, target: str) -> list[str]:
        import torch

        generate: dict[str, Any] = {"num_beams": BEAMS}
        inputs = list(texts)
        if model.tokens:
            source_token, target_token = model.tokens[source], model.tokens[target]
            generate["forced_bos_token_id"] = model.tokenizer.convert_tokens_to_ids(target_token)
            if hasattr(model.tokenizer, "src_lang"):  # M2M100/NLLB tokenizers add it themselves
                model.tokenizer.src_lang = source_token.strip("_")
            else:
                inputs = [f"{source_token} {text}" for text in inputs]
        # similar lengths share a batch, so little padding is computed
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))
        out = [""] * len(inputs)
        for start in range(0, len(order), BATCH):
            chunk = order[start : start + BATCH]
            batch = model.tokenizer(
                [inputs[i] for i in chunk], return_tensors="pt", padding=True, truncation=True
            ).to(self.device)
            longest = int(batch["input_ids"].shape[1])
            with torch.inference_mode():
                ids = model.model.generate(
                    **batch, max_new_tokens=min(512, 2 * longest + 8), **generate
                )
            decoded = model.tokenizer.batch_decode(ids, skip_special_tokens=True)
            for i, text in zip(chunk, decoded, strict=True):
                out[i] = text.strip()
        return out

    def close(self) -> None:
        self._models.clear()
