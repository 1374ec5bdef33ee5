"""The leads service as the runtime hosts it: opens and migrates the store on load."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from datetime import timedelta

import grpc
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from percept.leads.drafting import Drafting, Translate, load_templates
from percept.leads.face_erasure import FaceErasure
from percept.leads.followups import load_rules
from percept.leads.scoring import ScoringPolicy
from percept.leads.servicer import LeadsServicer
from percept.leads.store import LeadStore
from percept.leads.store.follow_ups import OVERDUE_BATCH
from percept.nlp.knowledge import knowledge_file, load_entries
from percept.runtime.batching import BatchMetrics
from percept.runtime.clients import Metadata, bearer_of, service_channel
from percept.runtime.periodic import every
from percept.runtime.settings import Settings
from percept.runtime.tls import channel_credentials
from percept.runtime.webhooks import WebhookDelivery
from percept.understanding import data
from percept.understanding.entities import catalog, prices
from percept.understanding.loading import known_intents, load_categories
from percept.v1 import leads_pb2, leads_pb2_grpc, nlp_pb2, nlp_pb2_grpc

log = logging.getLogger("percept.leads")
SERVICE = leads_pb2.DESCRIPTOR.services_by_name["Leads"].full_name
RETENTION_INTERVAL_S = 3600.0  # expired signals are purged at start and then hourly
TRANSLATE_TIMEOUT_S = 10.0
OVERDUE_INTERVAL_S = 60.0  # follow-ups past due are found (and sent to webhooks) this often


def scoring_policy(settings: Settings) -> ScoringPolicy:
    """The thresholds, the follow-up rules checked against the intents and call
    categories there are (a rule naming one nobody knows is refused at start-up), and
    the catalog's list prices (opportunities' expected value)."""
    categories = [c.name for c in load_categories(settings).categories]  # reads the dir
    return ScoringPolicy(
        half_life=timedelta(days=settings.leads_half_life_days),
        hot_threshold=settings.leads_hot_threshold,
        warm_threshold=settings.leads_warm_threshold,
        follow_ups=load_rules(settings.understanding_dir, known_intents(), categories),
        prices=prices(),
    )


def drafting(settings: Settings) -> Drafting:
    """The message templates, checked against the knowledge entries and the catalog's
    products there are (a template naming one nobody has is refused at start-up)."""
    data.use_directory(settings.understanding_dir)
    facts = {e.id: e for e in load_entries(knowledge_file(settings))}
    templates = load_templates(settings.understanding_dir, facts, catalog())
    return Drafting(templates, facts)


def english_to(nlp: nlp_pb2_grpc.NlpAsyncStub, metadata: Metadata) -> Translate:
    """nlp's machine translation from English, as drafting asks for it."""

    async def translate(texts: list[str], language: str) -> list[str]:
        reply = await nlp.Translate(
            nlp_pb2.TranslateRequest(texts=texts, source_language="en", target_language=language),
            metadata=metadata,
            timeout=TRANSLATE_TIMEOUT_S,
        )
        return [t.text for t in reply.translations]

    return translate


class WriteConflicts(Collector):
    """percept_leads_write_conflicts_total: write transactions run again after a conflict
    with another replica's (PostgreSQL); rising fast means replicas fight over people."""

    def __init__(self, store: LeadStore) -> None:
        self.store = store

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "percept_leads_write_conflicts",
            "Write transactions run again after a conflict with another replica's.",
            value=self.store.conflicts,
        )


class LeadsService:
    name = "leads"
    grpc_service_names: Sequence[str] = (SERVICE,)

    def __init__(self, settings: Settings) -> None:
        self.store = LeadStore(
            settings.resolved_database_url,
            scoring_policy(settings),
            default_region=settings.default_phone_region or None,
            webhook_urls=settings.leads_webhook_urls,
            max_people_per_key=settings.leads_max_people_per_key,
            follow_up_webhook_urls=settings.leads_follow_up_webhook_urls,
        )
        self.webhooks = (
            WebhookDelivery(self.store, settings.leads_webhook_secret)
            if settings.leads_webhook_urls or settings.leads_follow_up_webhook_urls
            else None
        )
        self.settings = settings
        self.faces: FaceErasure | None = None  # opened on load (a channel needs the loop)
        self._delivery: asyncio.Task[None] | None = None
        self._retention: asyncio.Task[None] | None = None
        self._erasure: asyncio.Task[None] | None = None
        self._overdue: asyncio.Task[None] | None = None
        self.retention_days = settings.leads_retention_days
        self.retention_by_kind = settings.leads_retention_by_kind
        self.registry = CollectorRegistry()  # served on the metrics port with the RPC metrics
        # percept_leads_write_batch_size: callers' batches per transaction (group commit).
        self.write_metrics = BatchMetrics(self.registry, "percept_leads_write")
        self.registry.register(WriteConflicts(self.store))
        self.servicer: LeadsServicer | None = None
        self.drafting = drafting(settings)
        self.nlp: grpc.aio.Channel | None = None  # opened on load: machine translation

    def add_to_server(self, server: grpc.aio.Server) -> None:
        self.servicer = LeadsServicer(
            self.store,
            erase_faces=self._erase_faces,
            metrics=self.write_metrics,
            drafting=self.drafting,
        )
        leads_pb2_grpc.add_LeadsServicer_to_server(self.servicer, server)

    async def _erase_faces(self, faces: Sequence[str]) -> int:
        return await self.faces.erase(faces) if self.faces is not None else 0

    async def load(self) -> None:
        await asyncio.to_thread(self.store.migrate)
        if self.servicer is not None:
            self.servicer.start_listening(asyncio.get_running_loop())
        if self.webhooks is not None:
            self._delivery = asyncio.create_task(self.webhooks.run(), name="leads-webhooks")
        self._retention = asyncio.create_task(
            every(RETENTION_INTERVAL_S, self._purge, "signal retention", at_start=True),
            name="leads-retention",
        )
        self._overdue = asyncio.create_task(
            every(
                OVERDUE_INTERVAL_S, self._mark_overdue, "overdue follow-ups check", at_start=True
            ),
            name="leads-overdue",
        )
        settings = self.settings
        self.faces = FaceErasure(
            self.store,
            service_channel(settings.vision_address, channel_credentials(settings)),
            bearer_of(settings.api_keys),
        )
        self._erasure = asyncio.create_task(self.faces.run(), name="leads-face-erasure")
        self.nlp = service_channel(settings.nlp_address, channel_credentials(settings))
        self.drafting.translate = english_to(
            nlp_pb2_grpc.NlpStub(self.nlp), bearer_of(settings.api_keys)
        )

    async def _purge(self) -> None:
        days, by_kind = self.retention_days, self.retention_by_kind
        done = await asyncio.to_thread(self.store.purge, days, by_kind)
        if self.servicer is not None:  # leads it deleted or re-scored (NOTIFY: the store)
            await self.servicer._announce(done.changes)

    async def _mark_overdue(self) -> None:
        while len(await asyncio.to_thread(self.store.mark_overdue)) == OVERDUE_BATCH:
            pass

    async def close(self) -> None:
        tasks = [t for t in (self._delivery, self._retention, self._erasure, self._overdue) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # then close what they used
        if self.servicer is not None:
            await self.servicer.writes.close()
            await asyncio.to_thread(self.servicer.stop_listening)
        if self.faces is not None:
            await self.faces.channel.close()
        if self.nlp is not None:
            await self.nlp.close()
        await asyncio.to_thread(self.store.close)
