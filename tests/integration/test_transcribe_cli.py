"""`percept transcribe`: a recording streamed as a call, events printed as JSON or text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from speech_audio import speak
from typer.testing import CliRunner

from percept.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_transcribe_prints_one_json_object_per_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERCEPT_DATA_DIR", str(tmp_path / "data"))
    wav = tmp_path / "call.wav"
    speak("Hello, I want to buy two phones for my office.", wav)
    result = runner.invoke(app, ["transcribe", str(wav), "--fast", "--json"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines()]
    kinds = [e["type"] for e in events if e["type"] != "EVENT_TYPE_CATEGORY"]
    (category,) = [e["category"] for e in events if e["type"] == "EVENT_TYPE_CATEGORY"]
    assert category["name"] == "buying_signal"
    assert "EVENT_TYPE_PARTIAL" in kinds
    assert kinds[-3:] == [
        "EVENT_TYPE_END_OF_UTTERANCE",
        "EVENT_TYPE_FINAL",
        "EVENT_TYPE_CALL_SUMMARY",
    ]
    final = next(e for e in reversed(events) if e["type"] == "EVENT_TYPE_FINAL")
    assert "phones" in final["transcript"]
    assert {"name": "purchase_intent"}.items() <= final["intents"][0].items()
    assert final["sentiment"].startswith("SENTIMENT_")
    (side,) = events[-1]["summary"]["roles"]
    assert side["utterances"] == 1 and float(side["talkTime"].rstrip("s")) > 1


def test_transcribe_prints_finals_and_intents_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERCEPT_DATA_DIR", str(tmp_path / "data"))
    wav = tmp_path / "call.wav"
    speak("Can we schedule a demo next week?", wav)
    result = runner.invoke(app, ["transcribe", str(wav), "--fast", "--no-interim"])
    assert result.exit_code == 0, result.output
    assert "schedule a demo" in result.output
    assert "demo_or_meeting_request" in result.output
    assert "call summary" in result.output and "wpm" in result.output


def test_transcribe_rejects_a_file_that_is_not_audio(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not audio at all")
    result = runner.invoke(app, ["transcribe", str(bogus)])
    assert result.exit_code == 2
    assert "not a readable audio file" in result.output


def test_transcribe_names_a_server_that_is_not_there(tmp_path: Path, free_port: object) -> None:
    wav = tmp_path / "call.wav"
    speak("Hello.", wav)
    port = free_port()  # type: ignore[operator]
    result = runner.invoke(app, ["transcribe", str(wav), "--server", f"127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert "speech service: UNAVAILABLE" in result.output
