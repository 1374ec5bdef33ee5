"""Picks a backend per language pair, pivots where no backend has the pair, caches.

Backends are tried in the configured order (`PERCEPT_NLP_TRANSLATION_BACKENDS`).
A pair no backend has is routed through one pivot language, English first:
with Apertium's fr-es and spa-eng, French reaches English through Spanish.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from percept.runtime.settings import Settings

PIVOT = "en"


class TranslationBackend(Protocol):
    name: str

    def pairs(self) -> list[tuple[str, str]]:
        """(source, target) ISO 639-1 codes this backend translates directly."""
        ...

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]: ...

    def close(self) -> None: ...


class UnsupportedPairError(LookupError):
    """No backend, direct or through a pivot, translates the pair."""

    def __init__(self, source: str, target: str, available: Sequence[tuple[str, str]]) -> None:
        listed = ", ".join(f"{s}->{t}" for s, t in available) or "none (no backend loaded)"
        super().__init__(
            f"no translation path from {source!r} to {target!r}; available pairs: {listed}"
        )


@dataclass(frozen=True)
class Step:
    source: str
    target: str
    backend: TranslationBackend


@dataclass(frozen=True)
class Route:
    steps: tuple[Step, ...]

    @property
    def pivot(self) -> str:
        return self.steps[0].target if len(self.steps) > 1 else ""

    @property
    def backend(self) -> str:
        names = dict.fromkeys(step.backend.name for step in self.steps)
        return "+".join(names)


@dataclass(frozen=True)
class Translated:
    text: str
    backend: str
    pivot: str


class LruCache:
    """Thread-safe bounded map; the least recently read entry goes first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str, str], Translated] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple[str, str, str]) -> Translated | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: tuple[str, str, str], value: Translated) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class Translator:
    def __init__(self, backends: Sequence[TranslationBackend], cache_size: int = 20_000) -> None:
        self.backends = list(backends)
        self.cache = LruCache(cache_size)
        self._direct: dict[tuple[str, str], TranslationBackend] = {}
        for backend in self.backends:  # earlier backends win a pair
            for pair in backend.pairs():
                self._direct.setdefault(pair, backend)

    def pairs(self) -> list[tuple[str, str, str]]:
        """Every (source, target, backend) a backend does directly."""
        return sorted((s, t, b.name) for b in self.backends for s, t in b.pairs())

    def languages(self) -> set[str]:
        return {code for pair in self._direct for code in pair}

    def route(self, source: str, target: str) -> Route:
        direct = self._direct.get((source, target))
        if direct is not None:
            return Route((Step(source, target, direct),))
        pivots = sorted(self.languages() - {source, target}, key=lambda code: code != PIVOT)
        for pivot in pivots:
            first, second = self._direct.get((source, pivot)), self._direct.get((pivot, target))
            if first is not None and second is not None:
                return Route((Step(source, pivot, first), Step(pivot, target, second)))
        raise UnsupportedPairError(source, target, sorted(self._direct))

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[Translated]:
        """Texts in one source language, in order; raises UnsupportedPairError."""
        if source == target:
            return [Translated(text, "", "") for text in texts]
        route = self.route(source, target)
        out: list[Translated | None] = [self.cache.get((source, target, t)) for t in texts]
        todo = list(dict.fromkeys(t for t, done in zip(texts, out, strict=True) if done is None))
        if todo:
            current = todo
            for step in route.steps:
                current = step.backend.translate(current, step.source, step.target)
            fresh = {
                text: Translated(result, route.backend, route.pivot)
                for text, result in zip(todo, current, strict=True)
            }
            for text, value in fresh.items():
                self.cache.put((source, target, text), value)
            out = [done or fresh[text] for text, done in zip(texts, out, strict=True)]
        return [t for t in out if t is not None]

    def translate_detected(
        self, texts: Sequence[str], target: str, detect: Callable[[str], str]
    ) -> list[tuple[str, Translated]]:
        """Each text from the language `detect` names; '' (nothing detectable) stays as is."""
        sources = [detect(text) for text in texts]
        out: dict[int, Translated] = {}
        for source in dict.fromkeys(sources):
            group = [i for i, s in enumerate(sources) if s == source]
            if not source:
                out.update((i, Translated(texts[i], "", "")) for i in group)
                continue
            done = self.translate([texts[i] for i in group], source, target)
            out.update(zip(group, done, strict=True))
        return [(sources[i], out[i]) for i in range(len(texts))]

    def close(self) -> None:
        for backend in self.backends:
            backend.close()


def load_translator(settings: Settings) -> Translator:
    """The configured backends, started and warm; a backend that cannot start fails the load."""
    backends: list[TranslationBackend] = []
    try:
        for name in dict.fromkeys(settings.nlp_translation_backends):
            if name == "apertium":
                from percept.nlp.apertium import ApertiumBackend

                apertium = ApertiumBackend(
                    settings.nlp_apertium_url, settings.nlp_apertium_modes_dir
                )
                backends.append(apertium)
                apertium.warm()
            else:
                from percept.nlp.seq2seq import Seq2SeqBackend

                folders = [settings.resolved_model_dir / m for m in settings.nlp_translation_models]
                if not folders:
                    raise ValueError(
                        "nlp_translation_backends has transformers but nlp_translation_models "
                        "names no model folder"
                    )
                backends.append(Seq2SeqBackend(folders, settings.nlp_device))
    except BaseException:
        for backend in backends:
            backend.close()
        raise
    return Translator(backends, settings.nlp_translation_cache_size)
