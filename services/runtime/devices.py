"""One rule for every service's device setting: 'auto' is the GPU when torch sees one."""

from __future__ import annotations


def resolve_device(device: str) -> str:
    """'auto' is 'cuda' when torch sees a GPU, else 'cpu'; 'cuda' without a GPU is an error."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("the device is set to cuda, but torch sees no CUDA device")
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"
