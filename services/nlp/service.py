"""The nlp service as the runtime hosts it: language models load on load."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
from prometheus_client import CollectorRegistry

from percept.nlp.dialogue import load_assistant
from percept.nlp.language import LanguageDetector
from percept.nlp.metrics import NlpMetrics
from percept.nlp.servicer import NlpServicer
from percept.nlp.translation import load_translator
from percept.runtime.ratelimit import RateLimiter
from percept.runtime.settings import Settings
from percept.runtime.signals import SignalPublisher
from percept.understanding.loading import load_understanding
from percept.v1 import nlp_pb2, nlp_pb2_grpc

SERVICE = nlp_pb2.DESCRIPTOR.services_by_name["Nlp"].full_name


class NlpService:
    name = "nlp"
    grpc_service_names: Sequence[str] = (SERVICE,)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.signals = SignalPublisher(settings, self.name, self.registry)
        self.servicer = NlpServicer(
            NlpMetrics(self.registry, lambda: self.servicer.translator),
            RateLimiter(settings.nlp_chat_per_minute, settings.nlp_chat_burst),
        )

    def add_to_server(self, server: grpc.aio.Server) -> None:
        nlp_pb2_grpc.add_NlpServicer_to_server(self.servicer, server)

    async def load(self) -> None:
        languages = tuple(self.settings.nlp_languages)
        detector, translator, understanding = await asyncio.gather(
            asyncio.to_thread(LanguageDetector, languages),
            asyncio.to_thread(load_translator, self.settings),
            asyncio.to_thread(load_understanding, self.settings),
        )
        self.servicer.detector, self.servicer.translator = detector, translator
        self.servicer.assistant = await asyncio.to_thread(
            load_assistant, self.settings, understanding, translator, detector
        )
        self.signals.start()
        self.servicer.publish = self.signals.publish

    async def close(self) -> None:
        self.servicer.publish = None
        await self.signals.close()
        if self.servicer.assistant is not None:
            self.servicer.assistant.store.close()
            self.servicer.assistant = None
        self.servicer.detector = None
        if self.servicer.translator is not None:
            await asyncio.to_thread(self.servicer.translator.close)
            self.servicer.translator = None
