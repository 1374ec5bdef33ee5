"""The cameras file: the packaged demo loads; each mistake is named with its line."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from percept.vision.cameras import Camera, CameraConfigError, load_cameras, parse_cameras

PRODUCTS = ["phone", "laptop"]
GOOD = """\
cameras:
  cam-1:
    zones:
      - name: phones
        kind: product
        product: phone
        polygon: [[0.1, 0.1], [0.5, 0.1], [0.5, 0.9], [0.1, 0.9]]
      - name: checkout
        kind: queue
        polygon: [[0.6, 0.1], [0.9, 0.1], [0.9, 0.9]]
"""


def test_the_packaged_demo_cameras_load() -> None:
    cameras = load_cameras(None, PRODUCTS)
    zones = {z.name: z for z in cameras["store-front"].zones}
    assert set(zones) == {"entrance", "phones", "laptops", "checkout"}
    assert zones["phones"].product == "phone" and zones["checkout"].kind == "queue"


def test_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "cameras.yaml"
    path.write_text(GOOD)
    camera = load_cameras(path, PRODUCTS)["cam-1"]
    assert [z.name for z in camera.zones] == ["phones", "checkout"]
    assert camera.density_grid == (4, 6)  # the default


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("[[0.6, 0.1], [0.9, 0.1], [0.9, 0.9]]", "[[0, 0], [1, 1], [1, 0], [0, 1]]"),
            "line 10: cameras.cam-1.zones.1.polygon: not a simple polygon "
            "(Self-intersection[0.5 0.5])",
        ),
        (
            ("[[0.6, 0.1], [0.9, 0.1], [0.9, 0.9]]", "[[0.6, 0.1], [1.2, 0.1], [0.9, 0.9]]"),
            "line 10: cameras.cam-1.zones.1.polygon: point #2 [1.2, 0.1] is outside the frame",
        ),
        (
            ("[[0.6, 0.1], [0.9, 0.1], [0.9, 0.9]]", "[[0.6, 0.1], [0.9, 0.1]]"),
            "a zone needs at least 3 points, got 2",
        ),
        (
            ("[[0.6, 0.1], [0.9, 0.1], [0.9, 0.9]]", "[[0.1, 0.1], [0.1001, 0.1], [0.1, 0.1001]]"),
            "the polygon has no area",
        ),
        (
            ("kind: queue", "kind: queue\n        colour: red"),
            "line 10: cameras.cam-1.zones.1.colour",
        ),
        (("product: phone", "product: fridge"), "line 4: zone 'phones': unknown product 'fridge'"),
        (("name: checkout", "name: phones"), "line 3: cameras.cam-1.zones: zone name 'phones' is"),
        (("cam-1:", "cam 1:"), "line 2: camera id 'cam 1' must be"),
        (("kind: queue", "kind: counter"), "line 9: cameras.cam-1.zones.1.kind"),
        (("cameras:", "cameras: ["), "not valid YAML"),
    ],
)
def test_mistakes_are_named_with_their_line(change: tuple[str, str], message: str) -> None:
    text = GOOD.replace(*change)
    with pytest.raises(CameraConfigError) as error:
        parse_cameras(text, "cameras.yaml", PRODUCTS)
    assert message in str(error.value)
    assert str(error.value).startswith("cameras.yaml")


def test_duplicate_zone_names_are_refused() -> None:
    with pytest.raises(CameraConfigError, match="zone name 'phones' is used twice"):
        parse_cameras(GOOD.replace("name: checkout", "name: phones"), "c.yaml", PRODUCTS)


def test_a_product_zone_must_name_its_product() -> None:
    with pytest.raises(CameraConfigError, match="a product zone names its product"):
        parse_cameras(GOOD.replace("        product: phone\n", ""), "c.yaml", PRODUCTS)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CameraConfigError, match=r"missing.yaml: cannot read"):
        load_cameras(tmp_path / "missing.yaml")


SOURCES = """\
cameras:
  door:
    frame_rate: 5
    source: rtsp://admin:pw@10.0.0.7:554/stream1
  demo:
    source: /srv/videos/store.mp4
    loop: true
  other:
    source: {source}
"""


def test_sources_are_read_and_schemes_checked_with_the_line() -> None:
    cameras = parse_cameras(SOURCES.format(source="v4l2:///dev/video0"), "cameras.yaml")
    assert cameras["door"].source.startswith("rtsp://") and cameras["door"].rtsp_transport == "tcp"
    assert cameras["demo"].loop and "pw" not in repr(cameras["door"])
    for source, words in [
        ("ftp://10.0.0.7/cam", "scheme 'ftp' is not one vision reads"),
        ("rtsp:///stream1", "names no host"),
        ("v4l2://video0", "v4l2:///dev/videoN"),
    ]:
        with pytest.raises(CameraConfigError) as caught:
            parse_cameras(SOURCES.format(source=source), "cameras.yaml")
        assert "cameras.yaml line 9: cameras.other.source:" in str(caught.value)
        assert words in str(caught.value)


def test_credentials_are_redacted_and_put_in_from_a_secret() -> None:
    from percept.vision.sources import redact, with_credentials

    url = "rtsp://admin:p%40ss@10.0.0.7:554/s"
    assert (
        redact(f"Server returned 401 for '{url}'")
        == "Server returned 401 for 'rtsp://***@10.0.0.7:554/s'"
    )
    assert with_credentials("rtsp://10.0.0.7/s", "user:pw") == "rtsp://user:pw@10.0.0.7/s"
    assert with_credentials(url, "user:pw") == url  # the URL's own win
    assert with_credentials("rtsp://10.0.0.7/s", "") == "rtsp://10.0.0.7/s"


LINE = """\
cameras:
  door:
    zones:
      - name: doorway
        kind: line
        {shape}
"""


def test_line_zones_are_two_different_points() -> None:
    camera = parse_cameras(LINE.format(shape="line: [[0.2, 0.6], [0.8, 0.6]]"), "c.yaml")["door"]
    assert camera.zones[0].points == ((0.2, 0.6), (0.8, 0.6)) and camera.zones[0].inside == "right"
    for shape, words in [
        ("line: [[0.4, 0.6], [0.4, 0.6]]", "line 6: cameras.door.zones.0.line: the line's two"),
        ("line: [[0.4, 0.6]]", "a line is two points, got 1"),
        ("line: [[0.4, 0.6], [1.4, 0.6]]", "point #2 is not [x, y] inside the frame"),
        ("polygon: [[0, 0], [1, 0], [1, 1]]", "a line zone needs line: [[x, y], [x, y]]"),
        ("line: [[0.2, 0.6], [0.8, 0.6]]\n        inside: up", "cameras.door.zones.0.inside"),
    ]:
        with pytest.raises(CameraConfigError) as caught:
            parse_cameras(LINE.format(shape=shape), "c.yaml")
        assert words in str(caught.value), caught.value


async def test_an_edit_that_failed_to_apply_is_tried_again(tmp_path: Path) -> None:
    """An edit read but not applied (a feed that would not start) must not count as
    taken: the next round tries it again instead of keeping the old cameras silently."""
    from percept.vision.metrics import VisionMetrics
    from percept.vision.reload import CamerasReloader

    path = tmp_path / "cameras.yaml"
    path.write_text("cameras:\n  door: {}\n")
    applied: list[list[str]] = []

    async def apply(cameras: Mapping[str, Camera]) -> None:
        applied.append(sorted(cameras))
        if len(applied) == 1:
            raise RuntimeError("feed would not start")

    reloader = CamerasReloader(path, apply, 1.0, VisionMetrics(CollectorRegistry()))
    path.write_text("cameras:\n  door: {}\n  till: {}\n")
    with pytest.raises(RuntimeError):
        await reloader.check()
    assert await reloader.check()
    assert applied == [["door", "till"], ["door", "till"]]
    assert not await reloader.check()  # taken now
