"""Real photos for the vision tests, and camera sequences made from them.

Photos come from packages: skimage's astronaut portrait (one person, one face)
and the group photos in the npm package @vladmandic/face-api (3 to 4 people
each), fetched once with `npm pack` into .cache/ and checked by sha256. A
"camera" is made by moving a real person across a background frame by frame
(percept.demo.media, shared with `percept demo`).
"""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from percept.demo.media import astronaut as _astronaut
from percept.demo.media import astronaut_person, background, paste, walk

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE = REPO_ROOT / ".cache" / "photos"
FACE_API = "@vladmandic/face-api@1.7.15"
GROUPS = {
    1: "8ecae4b267b2d3169e06e00c7dee97097aa2a94635d45216f7732a5f4943cb51",
    2: "7d2b60ae6f13bf30f422e04df87451081a02c83de469056f25afb44b7000c691",
    3: "8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936",
    4: "729efa5923061d40eb4ed5f267a18cc7b8ba6f852bb2757b16d8b7e4937476fc",
    5: "6d45095ebb182d8f975c0790e0e4eefd86fbb40609cf4b271776d92e12662938",
    6: "9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87",
}
# People and faces in each group photo, counted by eye.
PEOPLE = {1: 3, 2: 3, 3: 3, 4: 4, 5: 4, 6: 4}
FACES = {1: 3, 3: 3, 6: 4}
RGB = npt.NDArray[np.uint8]


def _fetch_groups() -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["npm", "pack", FACE_API, "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        with tarfile.open(Path(tmp) / out.strip().splitlines()[-1]) as archive:
            for n in GROUPS:
                member = archive.extractfile(f"package/demo/sample{n}.jpg")
                assert member is not None
                (CACHE / f"group{n}.jpg").write_bytes(member.read())


@cache
def group_photo(n: int) -> RGB:
    """Group photo `n` (1-6) of the face-api package, as RGB."""
    path = CACHE / f"group{n}.jpg"
    if not path.is_file():
        _fetch_groups()
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == GROUPS[n], f"{path} is not the pinned photo"
    return np.asarray(Image.open(path).convert("RGB"))


def group_photo_bytes(n: int) -> bytes:
    group_photo(n)
    return (CACHE / f"group{n}.jpg").read_bytes()


# The camera sequences are the demo's own (percept.demo.media); the tests use the same.
astronaut = cache(_astronaut)


__all__ = ["astronaut", "astronaut_person", "background", "paste", "walk"]
