"""G.711 (ITU-T) mu-law and A-law to 16-bit PCM: what telephone networks carry.

Each byte is one sample, expanded through a 256-entry table built from the
standard's decoding rule, so a chunk decodes with one numpy lookup.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Pcm = npt.NDArray[np.int16]


def _mulaw(code: int) -> int:
    u = ~code & 0xFF
    exponent, mantissa = (u >> 4) & 0x07, u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -magnitude if u & 0x80 else magnitude


def _alaw(code: int) -> int:
    a = code ^ 0x55
    exponent, mantissa = (a >> 4) & 0x07, a & 0x0F
    segment = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    magnitude = segment
    return magnitude if a & 0x80 else -magnitude


MULAW_TABLE: Pcm = np.array([_mulaw(c) for c in range(256)], np.int16)
ALAW_TABLE: Pcm = np.array([_alaw(c) for c in range(256)], np.int16)
TABLES = {"mulaw": MULAW_TABLE, "alaw": ALAW_TABLE}


def expand(data: bytes, law: str) -> Pcm:
    """G.711 bytes ("mulaw" or "alaw") as 16-bit samples."""
    return TABLES[law][np.frombuffer(data, np.uint8)]


def compress(pcm: Pcm, law: str) -> bytes:
    """16-bit samples to the nearest G.711 code: for tests and test calls."""
    table = TABLES[law]
    order = np.argsort(table, kind="stable")
    values = table[order].astype(np.int32)
    x = pcm.astype(np.int32)
    i = np.clip(np.searchsorted(values, x), 1, len(values) - 1)
    nearer = np.where(x - values[i - 1] <= values[i] - x, i - 1, i)
    return bytes(order[nearer].astype(np.uint8))
