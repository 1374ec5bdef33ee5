"""The nlp service as the runtime hosts it: language models load on load."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import grpc
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import SQLAlchemyError

from percept.nlp.dialogue import load_assistant
from percept.nlp.language import LanguageDetector
from percept.nlp.metrics import NlpMetrics
from percept.nlp.servicer import NlpServicer
from percept.nlp.signals import callback_signal
from percept.nlp.takeover import Takeovers
from percept.nlp.translation import load_translator
from percept.runtime.ratelimit import RateLimiter
from percept.runtime.settings import Settings
from percept.runtime.signals import SignalPublisher
from percept.runtime.webhooks import WebhookDelivery
from percept.understanding.loading import load_understanding
from percept.v1 import nlp_pb2, nlp_pb2_grpc

SERVICE = nlp_pb2.DESCRIPTOR.services_by_name["Nlp"].full_name
CALLBACK_CHECK_S = 1.0
log = logging.getLogger("percept.nlp")


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
        self.servicer.phone_region = settings.default_phone_region or None
        self._tasks: list[asyncio.Task[None]] = []

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
        assistant = await asyncio.to_thread(
            load_assistant, self.settings, understanding, translator, detector
        )
        self.servicer.assistant = assistant
        assert assistant.inbox is not None
        self.servicer.takeovers = Takeovers(assistant, assistant.inbox)
        self.signals.start()
        self.servicer.publish = self.signals.publish
        self._tasks = [asyncio.create_task(self._promise_callbacks(), name="nlp-callbacks")]
        if self.settings.nlp_handoff_webhook_urls:
            delivery = WebhookDelivery(assistant.inbox, self.settings.nlp_handoff_webhook_secret)
            self._tasks.append(asyncio.create_task(delivery.run(), name="nlp-webhooks"))

    async def _promise_callbacks(self) -> None:
        """Every second: a visitor who has waited too long for a salesperson is promised a
        callback, and leads gets the follow-up (one replica does each, see the inbox)."""
        takeovers = self.servicer.takeovers
        assert takeovers is not None
        while True:
            try:
                promises = await asyncio.to_thread(
                    takeovers.promise_callbacks, self.settings.nlp_handoff_wait_s
                )
            except SQLAlchemyError as exc:  # the database is away: try again later
                log.warning("callback check failed", extra={"error": type(exc).__name__})
                promises = []
            except Exception:  # never let the check die: no chat would be promised again
                log.exception("callback check failed")
                promises = []
            for promise in promises:
                self.signals.publish(callback_signal(promise.session, promise.waited_s))
            if promises:
                self.servicer.wake_watches()
            await asyncio.sleep(CALLBACK_CHECK_S)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.servicer.takeovers = None
        self.servicer.publish = None
        await self.signals.close()
        if self.servicer.assistant is not None:
            self.servicer.assistant.store.close()
            self.servicer.assistant = None
        self.servicer.detector = None
        if self.servicer.translator is not None:
            await asyncio.to_thread(self.servicer.translator.close)
            self.servicer.translator = None
