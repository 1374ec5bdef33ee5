"""The nlp service's own Prometheus metrics (the runtime adds per-RPC ones)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from percept.nlp.translation import Translator


class NlpMetrics:
    def __init__(
        self, registry: CollectorRegistry, translator: Callable[[], Translator | None]
    ) -> None:
        """`translator` gives the loaded translator, whose cache counts are read at scrape."""
        self.translated = Counter(
            "percept_nlp_translated_texts",
            "texts translated (cache hits included), by backend route",
            ["backend"],
            registry=registry,
        )
        self.chat_turns = Counter(
            "percept_nlp_chat_turns",
            "chat turns by what the assistant did: answered from knowledge, asked to "
            "clarify, did not understand, handed off, or acknowledged",
            ["outcome"],
            registry=registry,
        )
        self.handoffs = Counter(
            "percept_nlp_chat_handoffs",
            "chats handed to a human, by reason",
            ["reason"],
            registry=registry,
        )
        registry.register(_CacheCollector(translator))


class _CacheCollector(Collector):
    def __init__(self, translator: Callable[[], Translator | None]) -> None:
        self._translator = translator

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "percept_nlp_translation_cache", "translation cache lookups", labels=["result"]
        )
        translator = self._translator()
        if translator is not None:
            family.add_metric(["hit"], translator.cache.hits)
            family.add_metric(["miss"], translator.cache.misses)
        yield family
