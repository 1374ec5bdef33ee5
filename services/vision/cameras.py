"""Per-camera configuration: named zones (polygons), thresholds, density grid, faces.

A store edits `cameras.yaml` (PERCEPT_VISION_CAMERAS_FILE, or cameras.yaml in
PERCEPT_UNDERSTANDING_DIR, the Kubernetes ConfigMap; the packaged demo file
otherwise). Polygons are in frame fractions (0..1, x right, y down), so a
camera's resolution can change without editing its zones. Errors name the file,
the line and the field, at start-up.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from shapely.geometry import Polygon
from shapely.validation import explain_validity

from percept.vision.sources import check_source

FILE = "cameras.yaml"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


class CameraConfigError(ValueError):
    """The cameras file is malformed; the message names the file, line and field."""


def zone_polygon(points: Sequence[Sequence[float]]) -> Polygon:
    """A valid polygon in frame fractions, or a ValueError saying what is wrong."""
    if len(points) < 3:
        raise ValueError(f"a zone needs at least 3 points, got {len(points)}")
    for i, point in enumerate(points):
        if len(point) != 2:
            raise ValueError(f"point #{i + 1} is not [x, y]")
        if not all(0.0 <= v <= 1.0 for v in point):
            raise ValueError(
                f"point #{i + 1} {list(point)} is outside the frame "
                "(coordinates are fractions of its width and height, 0 to 1)"
            )
    polygon = Polygon([(float(x), float(y)) for x, y in points])
    if not polygon.is_valid:
        raise ValueError(f"not a simple polygon ({explain_validity(polygon)})")
    if polygon.area <= 1e-6:
        raise ValueError("the polygon has no area")
    return polygon


def line_points(points: Sequence[Sequence[float]]) -> None:
    """Checks a counting line: two different points inside the frame."""
    if len(points) != 2:
        raise ValueError(f"a line is two points, got {len(points)}")
    for i, point in enumerate(points):
        if len(point) != 2 or not all(0.0 <= v <= 1.0 for v in point):
            raise ValueError(f"point #{i + 1} is not [x, y] inside the frame (fractions, 0 to 1)")
    (x0, y0), (x1, y1) = points
    if math.hypot(x1 - x0, y1 - y0) < 0.01:
        raise ValueError("the line's two points are the same (or under 1% of the frame apart)")


class Zone(BaseModel):
    """A polygon people are in or out of, or (kind `line`) a line they cross in or out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME.pattern)
    kind: Literal["product", "queue", "entrance", "area", "line"] = "area"
    product: str = ""  # product zones: a product id of catalog.yaml
    polygon: tuple[tuple[float, float], ...] = ()
    # Lines: two points, and which side is in: left or right of the line walked from its
    # first point to its second, as seen on the image.
    line: tuple[tuple[float, float], ...] = ()
    inside: Literal["left", "right"] = "right"
    dwell_signal_s: float = Field(20.0, gt=0, description="dwell that tells leads of interest")
    crowd_alert: int | None = Field(None, ge=1, description="people at which it is crowded")
    queue_min_wait_s: float = Field(3.0, ge=0, description="queue zones: who counts as queuing")

    @field_validator("polygon")
    @classmethod
    def _simple(cls, points: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        if points:
            zone_polygon(points)
        return points

    @field_validator("line")
    @classmethod
    def _line(cls, points: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        if points:
            line_points(points)
        return points

    @model_validator(mode="after")
    def _shape_of_its_kind(self) -> Zone:
        if self.kind == "line":
            if not self.line:
                raise ValueError("a line zone needs line: [[x, y], [x, y]]")
            if self.polygon:
                raise ValueError("a line zone has a line, not a polygon")
        elif not self.polygon:
            raise ValueError(f"a {self.kind} zone needs a polygon (or kind: line and a line)")
        elif self.line:
            raise ValueError("only a line zone (kind: line) has a line")
        return self

    @property
    def shape(self) -> Polygon:
        return Polygon(self.polygon)

    @property
    def points(self) -> tuple[tuple[float, float], ...]:
        return self.line if self.kind == "line" else self.polygon


class Camera(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    zones: tuple[Zone, ...] = ()
    density_grid: tuple[int, int] = (4, 6)  # rows, columns
    density_half_life_s: float = Field(10.0, gt=0, description="how fast the heat map fades")
    crowd_alert: int | None = Field(None, ge=1, description="people in the frame")
    crowd_hold_s: float = Field(5.0, ge=0, description="how long crowding lasts to alert")
    faces: bool = True  # off: no face detection on this camera at all
    frame_rate: float = Field(10.0, gt=0, le=240, description="frames/s analysed at most")
    # Where vision pulls the camera's frames from itself (empty: a client pushes them
    # over StreamFrames): rtsp(s)://, http(s):// (MJPEG, HLS), a video file, v4l2:///dev/videoN.
    source: str = Field("", repr=False)  # its credentials stay out of logs
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    loop: bool = False  # a file source starts again at its end (demos)
    credentials_file: Path | None = None  # "user:password" for the source (a Secret)
    stall_s: float = Field(10.0, gt=0, le=300, description="no frame this long: down")
    max_backoff_s: float = Field(30.0, ge=1, le=3600, description="longest wait to reconnect")

    @field_validator("source")
    @classmethod
    def _source(cls, source: str) -> str:
        if source.strip():
            check_source(source.strip())
        return source.strip()

    @field_validator("density_grid")
    @classmethod
    def _grid(cls, grid: tuple[int, int]) -> tuple[int, int]:
        if not all(1 <= n <= 64 for n in grid):
            raise ValueError("rows and columns must be 1 to 64")
        return grid

    @field_validator("zones")
    @classmethod
    def _unique(cls, zones: tuple[Zone, ...]) -> tuple[Zone, ...]:
        seen: set[str] = set()
        for zone in zones:
            if zone.name in seen:
                raise ValueError(f"zone name {zone.name!r} is used twice")
            seen.add(zone.name)
        return zones


class CamerasFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cameras: dict[str, Camera]


def _line_of(node: Any, loc: Sequence[int | str]) -> int:
    """The line of the YAML node that a pydantic error location points at."""
    line = int(node.start_mark.line) + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):  # the key's line: "zones:", "polygon: [...]"
            pair = next(((k, v) for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            pair = (node.value[part], node.value[part]) if part < len(node.value) else None
        else:
            pair = None
        if pair is None:
            break
        line, node = int(pair[0].start_mark.line) + 1, pair[1]
    return line


def parse_cameras(text: str, name: str, products: Sequence[str] = ()) -> dict[str, Camera]:
    """The cameras of a file; `products` (catalog ids) are what product zones may name."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name} line {mark.line + 1}" if mark else name
        raise CameraConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise CameraConfigError(f"{name}: expected a mapping with 'cameras'")
    try:
        parsed = CamerasFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first["loc"]
        field = ".".join(str(p) for p in loc)
        message = first["msg"].removeprefix("Value error, ")
        raise CameraConfigError(f"{name} line {_line_of(node, loc)}: {field}: {message}") from None
    for camera_id, camera in parsed.cameras.items():
        if not NAME.fullmatch(camera_id):
            raise CameraConfigError(
                f"{name} line {_line_of(node, ['cameras', camera_id])}: camera id {camera_id!r} "
                "must be 1-64 letters, digits, '_', '.', ':' or '-'"
            )
        for i, zone in enumerate(camera.zones):
            where = f"{name} line {_line_of(node, ['cameras', camera_id, 'zones', i])}"
            if zone.kind == "product" and not zone.product:
                raise CameraConfigError(
                    f"{where}: zone {zone.name!r}: a product zone names its product"
                )
            if zone.product and products and zone.product not in products:
                raise CameraConfigError(
                    f"{where}: zone {zone.name!r}: unknown product {zone.product!r} "
                    f"(catalog.yaml has {', '.join(products)})"
                )
    return dict(parsed.cameras)


def load_cameras(path: Path | None, products: Sequence[str] = ()) -> Mapping[str, Camera]:
    """From `path`, else the packaged demo cameras."""
    if path is None:
        text = resources.files("percept.vision").joinpath(FILE).read_text()
        return parse_cameras(text, f"packaged {FILE}", products)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CameraConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    return parse_cameras(text, str(path), products)
