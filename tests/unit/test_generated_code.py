"""The committed generated code must match what the protos generate now."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load_generator() -> object:
    spec = importlib.util.spec_from_file_location(
        "gen_protos", REPO_ROOT / "scripts" / "gen_protos.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_protos"] = module
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    generator = _load_generator()
    fresh = {p.name: p.read_bytes() for p in generator.generate(tmp_path)}  # type: ignore[attr-defined]
    committed_dir = REPO_ROOT / "services" / "v1"
    committed = {
        p.name: p.read_bytes() for p in committed_dir.iterdir() if p.suffix in (".py", ".pyi")
    }
    assert sorted(committed) == sorted(fresh), (
        "generated file set differs: run scripts/gen_protos.py"
    )
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated code {stale}: run scripts/gen_protos.py"


def test_generated_code_imports_under_the_package_name() -> None:
    from percept.v1 import leads_pb2, speech_pb2_grpc

    assert leads_pb2.DESCRIPTOR.package == "percept.v1"
    assert hasattr(speech_pb2_grpc, "SpeechStub")
