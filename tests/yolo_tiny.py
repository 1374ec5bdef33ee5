"""A tiny YOLO the tests train themselves: one class ("square") on synthetic images.

No package ships YOLO weights, so the ultralytics backend is tested on a model
built here with ultralytics' own trainer (YOLOv8n from scratch, CPU, about two
minutes). It proves loading, inference, export and tracking; it knows squares,
nothing of COCO. Cached in .cache/ per recipe, so a second run reuses it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from percept.vision.yolo import import_yolo

REPO_ROOT = Path(__file__).resolve().parent.parent
SIZE = 128  # training images and the model's input size
RECIPE = {
    "model": "yolov8n.yaml",
    "train_images": 96,
    "val_images": 16,
    "epochs": 30,
    "imgsz": SIZE,
    "batch": 16,
    "mosaic": 0.0,
    "warmup_epochs": 1,
    "lr0": 0.02,
    "seed": 0,
}
RGB = npt.NDArray[np.uint8]
SQUARE = (230, 40, 40)


def square_image(
    rng: np.random.Generator, size: int = SIZE, count: int | None = None
) -> tuple[RGB, list[tuple[int, int, int, int]]]:
    """A dark background with 1-2 red squares; their boxes as (x0, y0, x1, y1)."""
    background = tuple(int(v) for v in rng.integers(0, 80, 3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    boxes = []
    for _ in range(count if count is not None else int(rng.integers(1, 3))):
        w, h = (int(v) for v in rng.integers(size * 3 // 16, size * 3 // 8, 2))
        x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
        draw.rectangle([x, y, x + w, y + h], fill=SQUARE)
        boxes.append((x, y, x + w, y + h))
    return np.asarray(image), boxes


def _dataset(root: Path) -> Path:
    rng = np.random.default_rng(RECIPE["seed"])  # type: ignore[arg-type]
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(int(RECIPE[f"{split}_images"])):  # type: ignore[call-overload]
            image, boxes = square_image(rng)
            Image.fromarray(image).save(root / "images" / split / f"{i}.png")
            lines = [
                f"0 {(x0 + x1) / 2 / SIZE} {(y0 + y1) / 2 / SIZE} {(x1 - x0) / SIZE} "
                f"{(y1 - y0) / SIZE}"
                for x0, y0, x1, y1 in boxes
            ]
            (root / "labels" / split / f"{i}.txt").write_text("\n".join(lines))
    config = root / "data.yaml"
    config.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames: {{0: square}}\n")
    return config


def tiny_yolo() -> Path:
    """The trained weights (`tiny-squares.pt`), training them on first use."""
    import ultralytics

    key = hashlib.sha256(
        json.dumps([RECIPE, ultralytics.__version__], sort_keys=True).encode()
    ).hexdigest()[:12]
    target = REPO_ROOT / ".cache" / "tiny-yolo" / key / "tiny-squares.pt"
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory(prefix="tiny-yolo-") as tmp:
        work = Path(tmp)
        YOLO = import_yolo(work / "config")

        data = _dataset(work / "data")
        model = YOLO(str(RECIPE["model"]))
        settings = {
            k: v for k, v in RECIPE.items() if k not in ("model", "train_images", "val_images")
        }
        model.train(
            data=str(data),
            device="cpu",
            workers=0,
            plots=False,
            pretrained=False,
            amp=False,
            val=False,
            close_mosaic=0,
            deterministic=True,
            project=str(work / "runs"),
            name="squares",
            verbose=False,
            **settings,
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(work / "runs" / "squares" / "weights" / "last.pt", target)
    return target


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
