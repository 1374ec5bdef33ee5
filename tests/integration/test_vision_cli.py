"""`percept detect` and `percept watch` with an in-process vision service (real models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner
from vision_harness import MODEL_DIR
from vision_media import astronaut_person, group_photo_bytes, walk

from percept.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def env(tmp_path: Path) -> dict[str, str]:
    return {
        "PERCEPT_DATA_DIR": str(tmp_path / "data"),
        "PERCEPT_MODEL_DIR": str(MODEL_DIR),
        "PERCEPT_LOG_LEVEL": "ERROR",
        "PERCEPT_LEADS_ADDRESS": "127.0.0.1:9",
        "COLUMNS": "200",
    }


def test_detect_prints_json_detections_and_faces(tmp_path: Path) -> None:
    photo = tmp_path / "group.jpg"
    photo.write_bytes(group_photo_bytes(3))
    result = runner.invoke(app, ["detect", str(photo), "--faces", "--json"], env=env(tmp_path))
    assert result.exit_code == 0, result.output
    detections = json.loads(result.output.strip().splitlines()[-1])
    assert sum(d["label"] == "person" for d in detections["detections"]) == 3
    assert len(detections["faces"]) == 3
    table = runner.invoke(app, ["detect", str(photo), "--class", "cup"], env=env(tmp_path))
    assert table.exit_code == 0, table.output
    assert "cup" in table.output and "person" not in table.output


def test_detect_of_a_file_that_is_no_image_says_why(tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not really a photo")
    result = runner.invoke(app, ["detect", str(text)], env=env(tmp_path))
    assert result.exit_code == 1
    assert "INVALID_ARGUMENT: image.encoded: not a JPEG or PNG image" in result.output


def test_watch_follows_a_visitor_through_the_zones(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, image in enumerate(walk(astronaut_person(), list(range(-40, 600, 40)), height=440)):
        Image.fromarray(image).save(frames / f"{i:03d}.jpg")
    result = runner.invoke(app, ["watch", str(frames), "--fast", "--fps", "2"], env=env(tmp_path))
    assert result.exit_code == 0, result.output
    assert "track 1 entered phones" in result.output
    assert "track 1 left phones after" in result.output
    assert "tracks [1]" in result.output and "tracks [2]" not in result.output
    assert "frames skipped" not in result.output  # --fast analyses every frame


def test_watch_reads_a_video_file(tmp_path: Path) -> None:
    import av

    video = tmp_path / "camera.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("mpeg4", rate=2)
        stream.width, stream.height, stream.pix_fmt = 854, 480, "yuv420p"
        for image in walk(astronaut_person(), list(range(-40, 600, 40)), height=440):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    result = runner.invoke(app, ["watch", str(video), "--fast"], env=env(tmp_path))
    assert result.exit_code == 0, result.output
    assert "#15" in result.output  # 16 frames
    assert "track 1 entered phones" in result.output
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    refused = runner.invoke(app, ["watch", str(broken)], env=env(tmp_path))
    assert refused.exit_code == 2 and "not a readable video" in refused.output


def test_watch_names_an_unknown_camera(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.fromarray(walk(astronaut_person(), [200])[0]).save(frames / "0.jpg")
    result = runner.invoke(
        app, ["watch", str(frames), "--camera", "garage", "--fast"], env=env(tmp_path)
    )
    assert result.exit_code == 1
    said = " ".join(result.output.split())  # as the terminal wraps it
    assert "NOT_FOUND: camera_id: 'garage' has no configuration" in said
    assert "or --zones FILE with your camera" in said
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = runner.invoke(app, ["watch", str(empty)], env=env(tmp_path))
    assert nothing.exit_code == 2 and "no .jpg or .png images" in nothing.output
