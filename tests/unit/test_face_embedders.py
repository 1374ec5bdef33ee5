"""The facenet embedder's plumbing, on an InceptionResnetV1 with random weights built here.

No registry ships facenet's trained weights (they download from GitHub), so this
proves loading from the model dir, the crops and the output; the random network's
embeddings mean nothing and no test treats them as faces. The real embedder
(dlib) is tested on real photos in tests/integration/test_vision_faces.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from percept.models import FACENET_WEIGHTS
from percept.runtime.settings import Settings
from percept.vision.faces import FacenetEmbedder
from percept.vision.service import load_embedder


@pytest.fixture(scope="module")
def random_facenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    model = InceptionResnetV1(classify=False, num_classes=8631)  # vggface2's head, as shipped
    folder = tmp_path_factory.mktemp("models") / "facenet-vggface2"
    folder.mkdir()
    torch.save(model.state_dict(), folder / FACENET_WEIGHTS)
    return folder.parent


def test_facenet_loads_from_the_model_dir_and_embeds_crops(random_facenet: Path) -> None:
    settings = Settings(model_dir=random_facenet, vision_face_embedder="facenet")
    embedder = load_embedder(settings, "cpu")
    assert isinstance(embedder, FacenetEmbedder)
    assert embedder.name == "facenet-20180402-114759-vggface2"
    image = np.random.default_rng(1).integers(0, 255, (400, 300, 3), dtype=np.uint8)
    boxes = np.array([[10, 20, 150, 190], [100, 150, 290, 390]], np.float32)
    vectors = embedder.embed(image, boxes)
    assert vectors.shape == (2, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)  # L2-normalised
    assert embedder.embed(image, np.zeros((0, 4), np.float32)).shape == (0, 512)


def test_facenet_without_weights_says_how_to_get_them(tmp_path: Path) -> None:
    settings = Settings(model_dir=tmp_path, vision_face_embedder="facenet")
    with pytest.raises(LookupError) as error:
        load_embedder(settings, "cpu")
    assert f"put {FACENET_WEIGHTS} in {tmp_path / 'facenet-vggface2'}" in str(error.value)
    assert "percept models pull facenet-vggface2" in str(error.value)
