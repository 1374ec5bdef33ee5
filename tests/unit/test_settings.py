from __future__ import annotations

import pytest

from percept.runtime.settings import SettingsError, load_settings

KEY_A = "a" * 24
KEY_B = "b" * 24


def test_defaults_give_each_service_its_documented_ports() -> None:
    settings = load_settings()
    assert [settings.port_for(n) for n in ("speech", "vision", "nlp", "leads")] == [
        50051,
        50052,
        50053,
        50054,
    ]
    assert [settings.metrics_port_for(n) for n in ("speech", "vision", "nlp", "leads")] == [
        9101,
        9102,
        9103,
        9104,
    ]
    assert settings.api_keys == []
    assert settings.resolved_model_dir == settings.data_dir / "models"
    assert settings.resolved_database_url.startswith("sqlite:///")


def test_environment_overrides_with_percept_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERCEPT_SPEECH_PORT", "6000")
    monkeypatch.setenv("PERCEPT_API_KEYS", f" {KEY_A} , {KEY_B},")
    monkeypatch.setenv("PERCEPT_MODEL_DIR", "/models")
    monkeypatch.setenv("PERCEPT_LOG_LEVEL", "debug")
    settings = load_settings()
    assert settings.speech_port == 6000
    assert settings.api_keys == [KEY_A, KEY_B]
    assert str(settings.resolved_model_dir) == "/models"
    assert settings.log_level == "DEBUG"


def test_invalid_port_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERCEPT_VISION_PORT", "70000")
    with pytest.raises(SettingsError, match=r"PERCEPT_VISION_PORT: .*less than or equal to 65535"):
        load_settings()


def test_redaction_kinds_are_a_comma_list_of_known_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().speech_redact == ["card", "iban", "national_id"]
    monkeypatch.setenv("PERCEPT_SPEECH_REDACT", "none")
    assert load_settings().speech_redact == ["none"]
    monkeypatch.setenv("PERCEPT_SPEECH_REDACT", "card, email")
    assert load_settings().speech_redact == ["card", "email"]
    monkeypatch.setenv("PERCEPT_SPEECH_REDACT", "card,cvv")
    with pytest.raises(SettingsError, match=r"PERCEPT_SPEECH_REDACT: .*'cvv' is not a redaction"):
        load_settings()


def test_non_numeric_value_is_rejected_with_its_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERCEPT_MAX_MESSAGE_BYTES", "lots")
    with pytest.raises(SettingsError, match=r"PERCEPT_MAX_MESSAGE_BYTES: .*'lots'"):
        load_settings()


def test_short_api_key_is_rejected_without_echoing_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERCEPT_API_KEYS", f"{KEY_A},short-secret")
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    message = str(excinfo.value)
    assert "PERCEPT_API_KEYS" in message
    assert "key #2" in message
    assert "short-secret" not in message
    assert KEY_A not in message


def test_face_gallery_key_must_be_32_bytes_and_is_never_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PERCEPT_VISION_GALLERY_KEY", "dG9vLXNob3J0LXNlY3JldA==")  # 16 bytes
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    message = str(excinfo.value)
    assert "PERCEPT_VISION_GALLERY_KEY: Value error, must be 32 random bytes in base64" in message
    assert "dG9vLXNob3J0LXNlY3JldA" not in message
    monkeypatch.setenv("PERCEPT_VISION_GALLERY_KEY", "A" * 43 + "=")
    assert len(load_settings().vision_gallery_key) == 44


def test_keepalive_timeout_must_be_shorter_than_interval() -> None:
    with pytest.raises(SettingsError, match="keepalive_timeout_s must be shorter"):
        load_settings(keepalive_time_s=5, keepalive_timeout_s=5)


def test_translation_backends_are_a_comma_list_of_known_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PERCEPT_NLP_TRANSLATION_BACKENDS", "transformers, apertium")
    monkeypatch.setenv("PERCEPT_NLP_TRANSLATION_MODELS", "opus-mt-en-de,nllb")
    settings = load_settings()
    assert settings.nlp_translation_backends == ["transformers", "apertium"]
    assert settings.nlp_translation_models == ["opus-mt-en-de", "nllb"]
    monkeypatch.setenv("PERCEPT_NLP_TRANSLATION_BACKENDS", "apertium,google")
    with pytest.raises(SettingsError, match=r"PERCEPT_NLP_TRANSLATION_BACKENDS.*'google'"):
        load_settings()
