"""The demo store's camera, made from a real photo: a person walking across a store view.

The person is Eileen Collins' NASA portrait, which scikit-image ships (the
`demo` extra installs it). Moving her across a plain floor frame by frame is a
camera sequence a real detector, tracker and face model work on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

RGB = npt.NDArray[np.uint8]
WIDTH, HEIGHT = 854, 480  # the demo camera's frames


def astronaut() -> RGB:
    try:
        from skimage import data
    except ImportError as exc:
        raise RuntimeError(
            "the demo's camera uses scikit-image's photos: pip install 'percept[demo]'"
        ) from exc
    return np.asarray(data.astronaut(), np.uint8)  # type: ignore[no-untyped-call]


def astronaut_person() -> RGB:
    """The astronaut cut out to her upper body (detected as a person, face included)."""
    return astronaut()[:, 20:380]


def background(width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> RGB:
    """A plain, slightly noisy store floor: nothing a detector would call an object."""
    rng = np.random.default_rng(seed)
    base = np.full((height, width, 3), 118, np.int16) + rng.integers(-6, 7, (height, width, 1))
    return np.asarray(np.clip(base, 0, 255), np.uint8)


def paste(frame: RGB, person: RGB, x: int, bottom: int, height: int) -> RGB:
    """`person` scaled to `height` px with its bottom at `bottom`, left edge at `x` (clipped)."""
    width = round(person.shape[1] * height / person.shape[0])
    scaled = np.asarray(Image.fromarray(person).resize((width, height), Image.Resampling.BILINEAR))
    out = frame.copy()
    top = bottom - height
    x0, x1 = max(0, x), min(out.shape[1], x + width)
    if x1 > x0:
        out[top:bottom, x0:x1] = scaled[:, x0 - x : x1 - x]
    return out


def walk(
    person: RGB,
    xs: Sequence[int],
    *,
    bottom: int = 470,
    height: int = 300,
    hidden: Sequence[int] = (),
    size: tuple[int, int] = (WIDTH, HEIGHT),
) -> list[RGB]:
    """One frame per x: the person walking; in frames listed in `hidden` a pillar hides them."""
    frames = []
    for i, x in enumerate(xs):
        frame = background(*size)
        if i not in hidden:
            frame = paste(frame, person, x, bottom, height)
        frames.append(frame)
    return frames
