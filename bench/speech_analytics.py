"""What call analytics cost (section 5 of bench/speech.py), against the model's own
decode of a final measured in the same run.

Per final: redaction (every kind on), sentiment (one sentence embedding and the
classifier), categories (the packaged rules) and the summary's bookkeeping; per
call: building the summary. Sentiment is also compared, for accuracy and speed,
with VADER (a lexicon; the benchmark's only use of it) on the held-out utterances.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from percept.runtime.settings import Settings
from percept.speech.call_summary import CallSummarizer
from percept.speech.categorizing import final_of
from percept.speech.redacting import CallRedaction
from percept.understanding.classifier import Understanding
from percept.understanding.loading import load_categories
from percept.understanding.redaction import KINDS, Redactor
from percept.understanding.sentiment import evaluate, held_out_examples
from percept.v1 import common_pb2
from percept.v1 import speech_pb2 as sp

CARD_LINE = "sure, my card number is 4539 1488 0343 6467, it expires 05/27, code 737"


def _per_item(work: Callable[[], object], items: int, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        begin = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - begin)
    return best / items


def _finals(texts: Sequence[str]) -> list[sp.RecognitionEvent]:
    out = []
    for i, text in enumerate(texts):
        event = sp.RecognitionEvent(
            type=sp.RecognitionEvent.EVENT_TYPE_FINAL,
            transcript=text,
            utterance_index=i,
            channel=i % 2,
            role=sp.CHANNEL_ROLE_AGENT if i % 2 == 0 else sp.CHANNEL_ROLE_CUSTOMER,
            words=[sp.WordInfo(word=" " + w) for w in text.split()],
            sentiment=common_pb2.SENTIMENT_NEUTRAL,
        )
        event.start_offset.FromNanoseconds(int(i * 4e9))
        event.end_offset.FromNanoseconds(int((i * 4 + 3) * 1e9))
        out.append(event)
    return out


def analytics_costs(
    settings: Settings, understanding: Understanding, texts: Sequence[str], decode_s: float
) -> None:
    """`texts`: real finals of the run; `decode_s`: the bare model's time per final."""
    lines = [*texts, CARD_LINE]
    redactor = Redactor(KINDS)
    t_redact = _per_item(
        lambda: [CallRedaction(redactor).apply(e) for e in _finals(lines)], len(lines)
    )
    # a final's intents and sentiment share one embedding: sentiment costs the difference
    t_both = _per_item(lambda: [understanding.intents_and_sentiment(t) for t in lines], len(lines))
    t_intents = _per_item(lambda: [understanding.intents(t) for t in lines], len(lines))
    t_sentiment = max(0.0, t_both - t_intents)
    categories = load_categories(settings)
    events = _finals(lines)
    t_categories = _per_item(
        lambda: [categories.for_call().add(final_of(e)) for e in events], len(events)
    )

    def summarise() -> None:
        summarizer = CallSummarizer("bench", 2.0)
        for e in events:
            summarizer.add(e)
        summarizer.summary(len(events) * 4.0)

    t_summary = _per_item(summarise, 1)
    t_build = _per_item(lambda: [final_of(e) for e in events], len(events))
    print(
        "5. call analytics, per final (against the bare model's decode of a final "
        f"in this run, {decode_s * 1000:.0f} ms)"
    )
    for name, cost in (
        ("redaction (every kind)", t_redact),
        ("sentiment", t_sentiment),
        ("categories (packaged rules)", t_categories + t_build),
    ):
        print(f"   {name:28s} {cost * 1000:7.2f} ms  ({100 * cost / decode_s:.1f} % of a decode)")
    print(f"   summary, per call of {len(events)} finals {t_summary * 1000:7.2f} ms")

    held = held_out_examples()
    said = [e.text for e in held]
    ours_s = _per_item(lambda: understanding.sentiment_classifier.predict(said), len(said))  # type: ignore[union-attr]
    assert understanding.sentiment_classifier is not None
    ours = [m.label for m in understanding.sentiment_classifier.predict(said)]
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()

    def lexicon(text: str) -> str:
        compound = vader.polarity_scores(text)["compound"]
        return "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"

    vader_s = _per_item(lambda: [lexicon(t) for t in said], len(said))
    theirs = [lexicon(t) for t in said]
    for name, labels, cost in (
        ("ours (MiniLM + LR)", ours, ours_s),
        ("VADER lexicon", theirs, vader_s),
    ):
        scores, accuracy = evaluate(labels, held)
        per = ", ".join(f"{s.label} P {s.precision:.2f} R {s.recall:.2f}" for s in scores)
        print(
            f"   sentiment {name:20s} accuracy {accuracy:.2f} on {len(held)} held out "
            f"({per}); {cost * 1000:.2f} ms an utterance"
        )
    print()
