"""Which backend and path the translator picks for a pair, and how it caches."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from percept.nlp.apertium import ApertiumBackend, ApertiumError
from percept.nlp.translation import Translator, UnsupportedPairError


class Recording:
    """A backend that tags texts with its name and the pair, and records each call."""

    def __init__(self, name: str, pairs: list[tuple[str, str]]) -> None:
        self.name, self._pairs = name, pairs
        self.calls: list[tuple[tuple[str, ...], str, str]] = []

    def pairs(self) -> list[tuple[str, str]]:
        return self._pairs

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        self.calls.append((tuple(texts), source, target))
        return [f"{text}|{self.name}:{source}>{target}" for text in texts]

    def close(self) -> None:
        pass


def test_the_first_backend_that_has_a_pair_wins() -> None:
    rules = Recording("rules", [("en", "es")])
    neural = Recording("neural", [("en", "es"), ("en", "de")])
    translator = Translator([rules, neural])
    assert translator.route("en", "es").backend == "rules"
    assert translator.route("en", "de").backend == "neural"
    assert ("en", "es", "neural") in translator.pairs()


def test_english_is_the_preferred_pivot() -> None:
    backend = Recording("b", [("fr", "en"), ("en", "de"), ("fr", "ca"), ("ca", "de")])
    route = Translator([backend]).route("fr", "de")
    assert route.pivot == "en"
    (done,) = Translator([backend]).translate(["salut"], "fr", "de")
    assert done.text == "salut|b:fr>en|b:en>de" and done.pivot == "en"


def test_other_pivots_are_used_when_english_cannot_connect() -> None:
    backend = Recording("b", [("fr", "es"), ("es", "en"), ("pt", "es")])
    assert Translator([backend]).route("fr", "en").pivot == "es"
    with pytest.raises(UnsupportedPairError, match=r"from 'fr' to 'pt'.*es->en, fr->es, pt->es"):
        Translator([backend]).route("fr", "pt")  # es->pt is missing: no path


def test_the_same_language_is_returned_as_is() -> None:
    backend = Recording("b", [("en", "es")])
    (done,) = Translator([backend]).translate(["hola"], "es", "es")
    assert (done.text, done.backend) == ("hola", "")
    assert backend.calls == []


def test_duplicates_and_repeats_reach_the_backend_once() -> None:
    backend = Recording("b", [("en", "es")])
    translator = Translator([backend], cache_size=10)
    translator.translate(["a", "b", "a"], "en", "es")
    translator.translate(["b", "c"], "en", "es")
    assert backend.calls == [(("a", "b"), "en", "es"), (("c",), "en", "es")]
    assert (translator.cache.hits, translator.cache.misses) == (1, 4)  # b hit, 4 lookups missed


def test_the_cache_is_bounded_and_drops_the_least_recently_used() -> None:
    backend = Recording("b", [("en", "es")])
    translator = Translator([backend], cache_size=2)
    for texts in (["a"], ["b"], ["a"], ["c"], ["a"], ["b"]):
        translator.translate(texts, "en", "es")
    # a stays (read again before c came), b was evicted by c and fetched again
    assert [call[0] for call in backend.calls] == [("a",), ("b",), ("c",), ("b",)]


def test_apertium_without_installed_pairs_says_how_to_install_them(tmp_path: Path) -> None:
    with pytest.raises(ApertiumError, match=r"no Apertium pairs in .*apt-get install apertium-"):
        ApertiumBackend(modes_dir=tmp_path)


def test_a_bad_apertium_url_is_refused() -> None:
    with pytest.raises(ApertiumError, match=r"expected http://host:port"):
        ApertiumBackend(url="ftp://example")
