"""Regenerates the committed gRPC/protobuf code under services/v1 from protos/.

Run with the dev extras installed: `python scripts/gen_protos.py [OUT_DIR]`.
The test suite calls `generate()` into a temporary directory and compares the
result byte for byte with the committed files, so stale code fails CI.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PACKAGE_PATH = Path("percept") / "v1"
TARGET = ROOT / "services" / "v1"
INIT = '"""Generated gRPC and protobuf code for the percept.v1 API (see protos/)."""\n'


def generate(out_dir: Path) -> list[Path]:
    """Writes generated modules and stubs for every proto into out_dir; returns their paths."""
    protos = sorted((PROTO_ROOT / PACKAGE_PATH).glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        plugin_dir = Path(sys.executable).parent
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"--proto_path={PROTO_ROOT}",
            f"--plugin=protoc-gen-mypy={plugin_dir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={plugin_dir / 'protoc-gen-mypy_grpc'}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--mypy_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            *[str(p.relative_to(PROTO_ROOT)) for p in protos],
        ]
        subprocess.run(cmd, check=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for src in sorted((Path(tmp) / PACKAGE_PATH).iterdir()):
            dest = out_dir / src.name
            shutil.copyfile(src, dest)
            written.append(dest)
    init = out_dir / "__init__.py"
    init.write_text(INIT)
    return [init, *written]


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET
    for stale in out.glob("*_pb2*"):
        stale.unlink()
    for path in generate(out):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
