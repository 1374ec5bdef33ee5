"""The four services of the suite and how to build each from settings."""

from __future__ import annotations

from collections.abc import Callable

from percept.leads.service import LeadsService
from percept.nlp.service import NlpService
from percept.runtime.pending import PendingService
from percept.runtime.server import Service
from percept.runtime.settings import SERVICE_NAMES, Settings
from percept.speech.service import SpeechService
from percept.v1 import vision_pb2, vision_pb2_grpc

ServiceFactory = Callable[[Settings], Service]

FACTORIES: dict[str, ServiceFactory] = {
    "speech": SpeechService,
    "vision": lambda _settings: PendingService(
        "vision",
        vision_pb2.DESCRIPTOR.services_by_name["Vision"],
        vision_pb2_grpc.add_VisionServicer_to_server,
    ),
    "nlp": NlpService,
    "leads": LeadsService,
}
assert tuple(FACTORIES) == SERVICE_NAMES


def build_service(name: str, settings: Settings) -> Service:
    return FACTORIES[name](settings)
