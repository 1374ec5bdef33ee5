"""Optional phrasing of knowledge answers by a causal language model (GPU nodes).

The model only rewords the retrieved answer for the visitor's question; its
text is used only when it is grounded in that answer (every number it states
is in the facts, and most of its words are the facts' or the question's).
Otherwise, and without a model, the knowledge answer is sent as written.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from percept.nlp.pretrained import load_pretrained
from percept.runtime.devices import resolve_device

PROMPT = (
    "Answer the customer's question in one or two friendly sentences, using only the facts.\n"
    "Facts: {facts}\nQuestion: {question}\nAnswer:"
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[^\W\d_]{4,}")
MIN_SHARED_WORDS = 0.6


def grounded(text: str, facts: str, question: str) -> bool:
    """True when `text` states no number the facts lack and mostly reuses their words."""
    if not text.strip():
        return False
    if not set(_NUMBER.findall(text)) <= set(_NUMBER.findall(facts)):
        return False
    words = {w.lower() for w in _WORD.findall(text)}
    if not words:
        return False
    known = {w.lower() for w in _WORD.findall(f"{facts} {question}")}
    return len(words & known) / len(words) >= MIN_SHARED_WORDS


class CausalLMPhraser:
    def __init__(self, model_dir: Path, device: str = "auto", max_new_tokens: int = 80) -> None:
        from transformers import AutoModelForCausalLM

        self.device = resolve_device(device)
        self.tokenizer, self.model = load_pretrained(
            AutoModelForCausalLM, model_dir, self.device, "generator model", "a causal LM"
        )
        self.max_new_tokens = max_new_tokens
        self._lock = threading.Lock()

    def phrase(self, question: str, facts: str) -> str | None:
        """A reworded answer, or None when the model's text is not grounded in the facts."""
        import torch

        prompt = PROMPT.format(facts=facts, question=question)
        inputs = self.tokenizer(prompt, return_tensors="pt").to(self.device)
        pad = self.tokenizer.pad_token_id or self.tokenizer.eos_token_id
        with self._lock, torch.inference_mode():
            ids = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad
            )
        new = ids[0, inputs["input_ids"].shape[1] :]
        text = str(self.tokenizer.decode(new, skip_special_tokens=True)).split("\n")[0].strip()
        return text if grounded(text, facts, question) else None
