"""openai-whisper on a checkpoint rebuilt from the packaged CTranslate2 weights."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from speech_audio import MAX_WER, floats16k, speak, wer

from percept.models import model_store
from percept.runtime.model_store import ModelNotFoundError
from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.speech.backends import FasterWhisperTranscriber
from percept.speech.convert import ConversionError, read_ctranslate2
from percept.speech.models import whisper_weights
from percept.speech.openai_backend import OpenAIWhisperTranscriber
from percept.speech.service import SpeechService
from percept.v1 import speech_pb2 as sp
from percept.v1 import speech_pb2_grpc

pytestmark = pytest.mark.slow
SENTENCES = (
    "I would like to purchase two laptops. My budget is $2,000.",
    "Can we schedule a demo next week?",
    "I want to buy two phones for my office.",
)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("data"), speech_port=0, metrics_enabled=False)


@pytest.fixture(scope="module")
def checkpoint(settings: Settings) -> Path:
    pulled = model_store(settings).pull("whisper-tiny.en-openai")
    assert (pulled.path / "percept-model.json").is_file()  # sha256 manifest
    return pulled.file("model.pt")


def test_both_backends_give_the_same_words_from_the_same_weights(
    settings: Settings, checkpoint: Path, tmp_path: Path
) -> None:
    reference = OpenAIWhisperTranscriber(checkpoint, device="cpu")
    ctranslate2 = FasterWhisperTranscriber(
        model_store(settings).resolve("whisper-tiny.en").path, device="cpu"
    )
    for n, sentence in enumerate(SENTENCES):
        audio = floats16k(speak(sentence, tmp_path / f"{n}.wav"))
        ours, language, _ = reference.transcribe(audio, None)
        theirs, _, _ = ctranslate2.transcribe(audio, None)
        text = " ".join(u.text for u in ours)
        assert language == "en"
        assert wer(sentence, text) <= MAX_WER, text
        # the same model: the same words (int8 vs float32 arithmetic aside)
        assert wer(" ".join(u.text for u in theirs), text) <= 0.1, (text, theirs)
        starts = [w.start for u in ours for w in u.words]
        other = [w.start for u in theirs for w in u.words]
        assert len(starts) == len(other)
        assert max(abs(a - b) for a, b in zip(starts, other, strict=True)) <= 0.2


async def test_the_service_runs_on_the_openai_backend(
    settings: Settings, checkpoint: Path, tmp_path: Path
) -> None:
    config = settings.model_copy(update={"speech_backend": "openai-whisper"})
    host = ServiceHost(SpeechService(config), config)
    await host.start()
    await asyncio.wait_for(host.ready.wait(), 120)
    try:
        async with grpc.aio.insecure_channel(host.address) as channel:
            stub = speech_pb2_grpc.SpeechStub(channel)
            wav = speak(SENTENCES[2], tmp_path / "s.wav")
            reply = await stub.Recognize(
                sp.RecognizeRequest(
                    config=sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_WAV),
                    audio_content=wav,
                )
            )
        final = reply.results[0]
        assert wer(SENTENCES[2], final.transcript) <= MAX_WER
        assert "purchase_intent" in {i.name for i in final.intents}
    finally:
        await host.stop(grace=1)


def test_official_checkpoints_load_from_the_model_dir_by_name(
    settings: Settings, checkpoint: Path, tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    (model_dir / "tiny.en.pt").write_bytes(checkpoint.read_bytes())
    config = settings.model_copy(
        update={
            "model_dir": model_dir,
            "speech_backend": "openai-whisper",
            "speech_model": "tiny.en",
        }
    )
    assert whisper_weights(config) == model_dir / "tiny.en.pt"
    model = OpenAIWhisperTranscriber(whisper_weights(config), device="cpu")
    # the official tiny.en alignment heads are known by the file's name
    assert model.model.alignment_heads.to_dense().sum() > 0
    missing = config.model_copy(update={"speech_model": "large-v3"})
    with pytest.raises(ModelNotFoundError, match=r"put large-v3.pt or large-v3/model.pt in"):
        whisper_weights(missing)
    ct2 = missing.model_copy(update={"speech_backend": "faster-whisper"})
    with pytest.raises(ModelNotFoundError, match=r"no CTranslate2 Whisper model 'large-v3'"):
        whisper_weights(ct2)


def test_a_truncated_model_bin_is_refused(settings: Settings, tmp_path: Path) -> None:
    source = model_store(settings).resolve("whisper-tiny.en").file("model.bin")
    cut = tmp_path / "model.bin"
    cut.write_bytes(source.read_bytes()[:100_000])
    with pytest.raises(ConversionError, match="truncated"):
        read_ctranslate2(cut)
    cut.write_bytes(b"\x63\x00\x00\x00")
    with pytest.raises(ConversionError, match="binary version 99"):
        read_ctranslate2(cut)


def test_cli_pulls_the_converted_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from percept.cli import app

    monkeypatch.setenv("PERCEPT_MODEL_DIR", str(tmp_path / "models"))
    result = CliRunner().invoke(app, ["models", "pull", "whisper-tiny.en-openai"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "models" / "whisper-tiny.en-openai" / "model.pt").stat().st_size > 10**7
