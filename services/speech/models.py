"""Which Whisper weights a backend loads: a catalog name, or any model in the model dir."""

from __future__ import annotations

from pathlib import Path

from percept.models import CHECKPOINT, model_store
from percept.runtime.model_store import ModelNotFoundError
from percept.runtime.settings import Settings
from percept.speech.backends import FasterWhisperTranscriber, Transcriber

OPENAI = "openai-whisper"


def whisper_weights(settings: Settings) -> Path:
    """faster-whisper: a CTranslate2 directory. openai-whisper: a checkpoint file.

    Catalog names resolve through the model store (package or model dir); any other
    name is looked up in the model dir, so base, small or large-v3 need no code:
    `<model_dir>/<name>/model.bin` (CTranslate2), `<model_dir>/<name>.pt` or
    `<model_dir>/<name>/model.pt` (openai-whisper, e.g. the official large-v3.pt).
    """
    store, name = model_store(settings), settings.speech_model
    known = {spec.name for spec in store.specs}
    if settings.speech_backend == OPENAI:
        derived = f"{name}-openai"
        if derived in known:
            return store.resolve(derived).file(CHECKPOINT)
        for candidate in (store.model_dir / f"{name}.pt", store.model_dir / name / CHECKPOINT):
            if candidate.is_file():
                return candidate
        raise ModelNotFoundError(
            f"no openai-whisper checkpoint for {name!r}: put {name}.pt or {name}/{CHECKPOINT} "
            f"in {store.model_dir}"
        )
    if name in known:
        return store.resolve(name).path
    local = store.model_dir / name
    if (local / "model.bin").is_file():
        return local
    raise ModelNotFoundError(
        f"no CTranslate2 Whisper model {name!r}: put its model.bin, config.json and "
        f"tokenizer.json in {local} (known models: {', '.join(sorted(known))})"
    )


def load_transcriber(settings: Settings) -> Transcriber:
    weights = whisper_weights(settings)
    device, threads = settings.speech_device, settings.speech_cpu_threads
    if settings.speech_backend == OPENAI:
        from percept.speech.openai_backend import OpenAIWhisperTranscriber

        return OpenAIWhisperTranscriber(weights, device=device, cpu_threads=threads)
    return FasterWhisperTranscriber(weights, device=device, cpu_threads=threads)
