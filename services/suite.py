"""The four services of the suite and how to build each from settings."""

from __future__ import annotations

from collections.abc import Callable

from percept.leads.service import LeadsService
from percept.nlp.service import NlpService
from percept.runtime.server import Service
from percept.runtime.settings import SERVICE_NAMES, Settings
from percept.speech.service import SpeechService
from percept.vision.service import VisionService

ServiceFactory = Callable[[Settings], Service]

FACTORIES: dict[str, ServiceFactory] = {
    "speech": SpeechService,
    "vision": VisionService,
    "nlp": NlpService,
    "leads": LeadsService,
}
assert tuple(FACTORIES) == SERVICE_NAMES


def build_service(name: str, settings: Settings) -> Service:
    return FACTORIES[name](settings)
