"""The images' Dockerfiles pass hadolint and keep the final stage lean and non-root."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ("Dockerfile", "Dockerfile.cuda")


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_passes(name: str) -> None:
    beside_python = Path(sys.executable).parent / "hadolint"
    hadolint = shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)
    if hadolint is None:
        pytest.fail("hadolint missing: install the dev extras (scripts/setup.sh)")
    result = subprocess.run([hadolint, str(ROOT / name)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def stages(name: str) -> dict[str, str]:
    text = (ROOT / name).read_text()
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize("name", DOCKERFILES)
def test_final_stage_is_non_root_without_build_tools(name: str) -> None:
    final = stages(name)["runtime"]
    assert "USER 10001" in final
    assert list(stages(name))[-1] == "runtime"  # the default target
    for tool in ("gcc", "build-essential", "pip install", "git "):
        assert tool not in final, tool


def test_base_images_are_pinned_to_exact_versions() -> None:
    for name in DOCKERFILES:
        for image in re.findall(r"^ARG \w+_IMAGE=(\S+)$", (ROOT / name).read_text(), re.MULTILINE):
            tag = image.partition(":")[2]
            assert re.match(r"\d+\.\d+\.\d+", tag), image


def test_cuda_image_carries_the_cublas_that_ctranslate2_loads() -> None:
    """CTranslate2 dlopens libcublas.so.<major> at run time: a mismatch only shows on a GPU."""
    import ctranslate2

    libs = Path(ctranslate2.__file__).parent.parent / "ctranslate2.libs"
    (library,) = libs.glob("libctranslate2-*.so*")
    majors = set(re.findall(rb"libcublas\.so\.(\d+)", library.read_bytes()))
    assert len(majors) == 1, majors
    major = majors.pop().decode()
    dockerfile = (ROOT / "Dockerfile.cuda").read_text()
    assert f"nvidia-cublas-cu{major}==" in dockerfile
    assert f"nvidia-cudnn-cu{major}==" in dockerfile
    assert "site-packages/nvidia/cublas/lib" in dockerfile  # on LD_LIBRARY_PATH
