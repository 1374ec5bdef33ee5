"""Services whose every method answers UNIMPLEMENTED, for tests of the runtime itself."""

from __future__ import annotations

from percept.runtime.pending import PendingService
from percept.runtime.server import Service
from percept.v1 import speech_pb2, speech_pb2_grpc


def pending_speech() -> Service:
    """The speech API without a model: answers that do not depend on one."""
    return PendingService(
        "speech",
        speech_pb2.DESCRIPTOR.services_by_name["Speech"],
        speech_pb2_grpc.add_SpeechServicer_to_server,
    )
