"""The nlp service as the runtime hosts it: language models load on load."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from percept.nlp.language import LanguageDetector
from percept.nlp.servicer import NlpServicer
from percept.nlp.translation import load_translator
from percept.runtime.settings import Settings
from percept.v1 import nlp_pb2, nlp_pb2_grpc

SERVICE = nlp_pb2.DESCRIPTOR.services_by_name["Nlp"].full_name


class NlpService:
    name = "nlp"
    grpc_service_names: Sequence[str] = (SERVICE,)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.servicer = NlpServicer()

    def add_to_server(self, server: grpc.aio.Server) -> None:
        nlp_pb2_grpc.add_NlpServicer_to_server(self.servicer, server)

    async def load(self) -> None:
        languages = tuple(self.settings.nlp_languages)
        detector, translator = await asyncio.gather(
            asyncio.to_thread(LanguageDetector, languages),
            asyncio.to_thread(load_translator, self.settings),
        )
        self.servicer.detector, self.servicer.translator = detector, translator

    async def close(self) -> None:
        self.servicer.detector = None
        if self.servicer.translator is not None:
            await asyncio.to_thread(self.servicer.translator.close)
            self.servicer.translator = None
