"""Faces with the real MTCNN and dlib weights on real photos: embedding distances,
consent-only enrolment and its bad inputs, recognition in Detect and in streams,
erasure, and a deployment with recognition off."""

from __future__ import annotations

import itertools
import time

import grpc
import numpy as np
import pytest
from conftest import VisionHost
from vision_harness import frames_of, lockstep, start_vision, vision_settings
from vision_media import astronaut, astronaut_person, background, group_photo, walk

from percept.v1 import common_pb2, vision_pb2, vision_pb2_grpc
from percept.vision.engine import VisionEngine
from percept.vision.images import encode_jpeg

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
CONSENT = "in-store kiosk 2, signed 2026-12-02 10:14"


def engine_of(vision: VisionHost) -> VisionEngine:
    engine = vision[0].servicer.engine
    assert engine is not None and engine.face_detector and engine.embedder
    return engine


def embeddings(engine: VisionEngine, image: np.ndarray) -> np.ndarray:
    assert engine.face_detector is not None and engine.embedder is not None
    faces = engine.face_detector.detect(image)
    return engine.embedder.embed(image, faces.boxes)


def jpeg(image: np.ndarray) -> vision_pb2.Image:
    return vision_pb2.Image(encoded=encode_jpeg(image))


async def test_same_person_is_close_and_different_people_are_far(
    vision: VisionHost,
) -> None:
    engine = engine_of(vision)
    portrait = astronaut()
    (original,) = embeddings(engine, portrait)
    (mirrored,) = embeddings(engine, portrait[:, ::-1].copy())
    (smaller,) = embeddings(engine, portrait[::2, ::2].copy())
    assert np.linalg.norm(original - mirrored) < 0.25
    assert np.linalg.norm(original - smaller) < 0.3
    threshold = engine.embedder.threshold  # type: ignore[union-attr]
    for n, faces in ((1, 3), (3, 3), (6, 4)):
        group = embeddings(engine, group_photo(n))
        assert len(group) == faces
        assert min(np.linalg.norm(group - original, axis=1)) > 0.6  # nobody is the astronaut
        for a, b in itertools.combinations(group, 2):  # different people in one photo
            assert np.linalg.norm(a - b) > threshold


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (
            vision_pb2.EnrollRequest(image=jpeg(astronaut())),
            grpc.StatusCode.INVALID_ARGUMENT,
            "consent_reference: required (where and when the visitor consented); "
            "no face is enrolled without consent",
        ),
        (
            vision_pb2.EnrollRequest(image=jpeg(astronaut()), consent_reference="   "),
            grpc.StatusCode.INVALID_ARGUMENT,
            "consent_reference: required",
        ),
        (
            vision_pb2.EnrollRequest(image=jpeg(astronaut()), consent_reference="ok\x00"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "consent_reference: printable text",
        ),
        (
            vision_pb2.EnrollRequest(consent_reference=CONSENT),
            grpc.StatusCode.INVALID_ARGUMENT,
            "image: empty",
        ),
        (
            vision_pb2.EnrollRequest(
                image=vision_pb2.Image(encoded=encode_jpeg(astronaut())[:300]),
                consent_reference=CONSENT,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "image.encoded: damaged or truncated JPEG",
        ),
        (  # leads would refuse the enrolment's signal after the face was enrolled
            vision_pb2.EnrollRequest(
                image=jpeg(astronaut()),
                consent_reference=CONSENT,
                identity=common_pb2.IdentityKeys(email="not-an-email"),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "identity.email: 'not-an-email' is not an e-mail address",
        ),
        (
            vision_pb2.EnrollRequest(image=jpeg(group_photo(3)), consent_reference=CONSENT),
            grpc.StatusCode.INVALID_ARGUMENT,
            "image: 3 faces found; enrolment needs exactly one",
        ),
        (
            vision_pb2.EnrollRequest(image=jpeg(background()), consent_reference=CONSENT),
            grpc.StatusCode.INVALID_ARGUMENT,
            "image: no face found",
        ),
        (
            vision_pb2.EnrollRequest(
                image=jpeg(astronaut()[::3, ::3].copy()), consent_reference=CONSENT
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "enrolment needs at least 60 px",
        ),
    ],
)
async def test_enrolment_needs_consent_and_one_clear_face(
    vision_stub: vision_pb2_grpc.VisionAsyncStub,
    request_: vision_pb2.EnrollRequest,
    code: grpc.StatusCode,
    message: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await vision_stub.Enroll(request_)
    assert error.value.code() == code
    assert message in (error.value.details() or "")


async def test_an_enrolled_visitor_is_recognised_until_erased(
    vision_stub: vision_pb2_grpc.VisionAsyncStub,
) -> None:
    identity = common_pb2.IdentityKeys(phone="+14155550123")
    enrolled = await vision_stub.Enroll(
        vision_pb2.EnrollRequest(
            image=jpeg(astronaut()),
            consent_reference=CONSENT,
            identity=identity,
            camera_id="store-front",
        )
    )
    face_id = enrolled.face_identity_id
    assert face_id.startswith("face-")
    days = (enrolled.expires_at.ToSeconds() - time.time()) / 86400
    assert days == pytest.approx(180, abs=0.01)
    # The same person again (mirrored photo): renewed, not a second identity.
    again = await vision_stub.Enroll(
        vision_pb2.EnrollRequest(
            image=jpeg(astronaut()[:, ::-1].copy()), consent_reference=CONSENT + " (renewed)"
        )
    )
    assert again.face_identity_id == face_id

    seen = await vision_stub.Detect(
        vision_pb2.DetectRequest(image=jpeg(astronaut()), detect_faces=True)
    )
    assert [(f.visitor_id, f.enrolled) for f in seen.faces] == [(face_id, True)]
    assert seen.faces[0].match_distance < 0.3  # 0 here: the very photo that was enrolled
    strangers = await vision_stub.Detect(
        vision_pb2.DetectRequest(image=jpeg(group_photo(1)), detect_faces=True)
    )
    assert not any(f.enrolled for f in strangers.faces)

    # On camera: her face is looked at once a second and matched; others stay ephemeral.
    results = await lockstep(
        vision_stub, frames_of(walk(astronaut_person(), list(range(100, 400, 30)), height=440), 0.5)
    )
    faces = [f for r in results for f in r.faces]
    assert faces and all(f.enrolled and f.visitor_id == face_id for f in faces)

    erased = await vision_stub.ForgetVisitor(
        vision_pb2.ForgetVisitorRequest(face_identity_id=face_id)
    )
    assert erased.embeddings_erased == 1
    after = await vision_stub.Detect(
        vision_pb2.DetectRequest(image=jpeg(astronaut()), detect_faces=True)
    )
    assert [f.enrolled for f in after.faces] == [False]
    assert after.faces[0].visitor_id.startswith("visit-")
    twice = await vision_stub.ForgetVisitor(
        vision_pb2.ForgetVisitorRequest(face_identity_id=face_id)
    )
    assert twice.embeddings_erased == 0  # erasure can be retried safely


async def test_forget_needs_an_id(vision_stub: vision_pb2_grpc.VisionAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await vision_stub.ForgetVisitor(vision_pb2.ForgetVisitorRequest(face_identity_id=" "))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == "face_identity_id: required"


async def test_no_face_data_is_kept_for_visitors_who_did_not_enrol(
    vision: VisionHost,
) -> None:
    engine = engine_of(vision)
    assert engine.gallery is not None
    assert engine.gallery.size() == 0  # the astronaut was erased; nobody else enrolled
    files = [p.name for p in vision[0].settings.data_dir.rglob("*") if p.is_file()]
    assert not [f for f in files if f.lower().endswith((".jpg", ".jpeg", ".png"))]


async def test_a_deployment_without_recognition_refuses_enrolment(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    _, host = await start_vision(
        vision_settings(tmp_path_factory.mktemp("vision-detect-only"), vision_faces="detect")
    )
    try:
        async with grpc.aio.insecure_channel(host.address) as channel:
            stub = vision_pb2_grpc.VisionStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.Enroll(
                    vision_pb2.EnrollRequest(image=jpeg(astronaut()), consent_reference=CONSENT)
                )
            assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "PERCEPT_VISION_FACES=detect" in (error.value.details() or "")
            seen = await stub.Detect(
                vision_pb2.DetectRequest(image=jpeg(astronaut()), detect_faces=True)
            )
            assert len(seen.faces) == 1 and not seen.faces[0].enrolled
    finally:
        await host.stop(grace=1)
