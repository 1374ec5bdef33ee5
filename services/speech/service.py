"""The speech service as the runtime hosts it: resolves and loads the Whisper model on load."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from functools import partial

import grpc
from prometheus_client import CollectorRegistry

from percept.nlp.translation import load_translator
from percept.runtime.settings import Settings
from percept.runtime.signals import SignalPublisher
from percept.speech.engine import SpeechEngine
from percept.speech.gateway.server import MediaGateway
from percept.speech.models import load_transcriber
from percept.speech.servicer import SpeechServicer, StreamLimits
from percept.understanding.loading import load_categories, load_understanding
from percept.understanding.redaction_kinds import parse_kinds
from percept.v1 import speech_pb2, speech_pb2_grpc

log = logging.getLogger("percept.speech")
SERVICE = speech_pb2.DESCRIPTOR.services_by_name["Speech"].full_name


class SpeechService:
    name = "speech"
    grpc_service_names: Sequence[str] = (SERVICE,)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.gateway: MediaGateway | None = None
        self.signals = SignalPublisher(settings, self.name, self.registry)
        self.servicer = SpeechServicer(
            limits=StreamLimits(
                max_chunk_bytes=settings.speech_max_chunk_bytes,
                max_stream_s=settings.speech_max_stream_s,
                partial_interval_s=settings.speech_partial_interval_ms / 1000,
                endpoint_silence_s=settings.speech_endpoint_silence_ms / 1000,
            )
        )
        self.servicer.redact = parse_kinds(settings.speech_redact)
        self.servicer.contacts_as_keys = settings.speech_redacted_contacts_as_keys
        self.servicer.summary_silence_s = settings.speech_summary_silence_s
        self.servicer.phone_region = settings.default_phone_region or None

    async def listen(self) -> None:
        """The telephony gateway listens at once; it answers 503 until the model loads."""
        if self.settings.speech_gateway:
            self.gateway = MediaGateway(self.servicer, self.settings, self.registry)
            await self.gateway.start()

    async def drain(self, grace: float | None) -> None:
        if self.gateway is not None:
            await self.gateway.stop(grace)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        speech_pb2_grpc.add_SpeechServicer_to_server(self.servicer, server)

    async def load(self) -> None:
        transcriber = await asyncio.to_thread(load_transcriber, self.settings)
        self.servicer.model_name = self.settings.speech_model
        self.servicer.understanding = await asyncio.to_thread(
            partial(load_understanding, self.settings, sentiment_too=True)
        )
        self.servicer.categories = await asyncio.to_thread(load_categories, self.settings)
        if not transcriber.english_only:  # finals in other languages: intents in translation
            try:
                self.servicer.translator = await asyncio.to_thread(load_translator, self.settings)
            except Exception:  # an image without Apertium still transcribes
                log.exception("no translator: non-English finals get intents from their own text")
        self.signals.start()
        self.servicer.publish = self.signals.publish
        self.servicer.engine = SpeechEngine(transcriber, registry=self.registry)

    async def close(self) -> None:
        engine, self.servicer.engine = self.servicer.engine, None
        if engine is not None:
            await engine.close()
        self.servicer.publish = None
        translator, self.servicer.translator = self.servicer.translator, None
        if translator is not None:
            translator.close()
        await self.signals.close()
