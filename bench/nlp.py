"""NLP service speed and answer quality, against baselines measured in the same run.

1. Translation throughput: `Translate` over gRPC (warm Apertium pipelines behind
   apertium-apy, batches of 32 distinct sentences, cache off) against spawning
   the Apertium CLI (`apertium eng-spa`) per sentence; also one text per call,
   and repeats served from the cache.
2. Chat-turn latency: scripted English and Spanish conversations over gRPC
   (language detection, translation both ways, intents, entities, retrieval,
   slot filling, session store): median and p95 per turn.
   Native replies against machine-translated ones: the Spanish conversation with the
   knowledge's and prompts' Spanish text, and with English text through Apertium
   (translation cache off, runs alternated).
3. Retrieval accuracy on held-out question paraphrases (bench/knowledge_paraphrases.yaml,
   none of them in the knowledge file), ranked as the chat does (a product the
   question names is preferred): top-1 accuracy, and at the service's
   threshold how many are answered right, answered wrong, or (off-topic) answered at all.

4. Takeover message latency: a salesperson's message from SendSalespersonMessage until
   the visitor's WatchChats stream has it, and the visitor's message while claimed until
   the salesperson's stream has it; on the replica that wrote it (woken at once), and
   written by another replica (found by the watch's poll).

Run: .venv/bin/python bench/nlp.py [--texts 256] [--chats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from itertools import product
from pathlib import Path

import grpc
import yaml
from sqlalchemy import create_engine

from percept.nlp.inbox import SALESPERSON, ChatInbox, Said
from percept.nlp.knowledge import KnowledgeBase, load_entries
from percept.nlp.prompts import PromptBook
from percept.nlp.service import NlpService
from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.understanding.embeddings import MiniLMEmbedder
from percept.understanding.entities import extract_entities
from percept.v1 import nlp_pb2, nlp_pb2_grpc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from chat_scripts import ENGLISH_CHAT, SPANISH_CHAT  # noqa: E402  (the tests' scripts)

SUBJECTS = ("I want", "We need", "My company wants", "Our team would like", "My wife wants")
ITEMS = ("phones", "laptops", "tablets", "headphones", "watches", "televisions", "printers")
WHEN = ("today", "next week", "this month", "before Christmas", "for the new office")


def sentences(n: int) -> list[str]:
    made = [
        f"{who} {count} {item} {when}."
        for who, item, when, count in product(SUBJECTS, ITEMS, WHEN, range(2, 12))
    ]
    return made[:n]


def cli_per_text(texts: list[str]) -> float:
    """Seconds per text when each one spawns `apertium eng-spa`."""
    start = time.perf_counter()
    for text in texts:
        subprocess.run(
            ["apertium", "eng-spa"], input=text.encode(), capture_output=True, check=True
        )
    return (time.perf_counter() - start) / len(texts)


async def translate_rate(stub: nlp_pb2_grpc.NlpAsyncStub, texts: list[str], batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        request = nlp_pb2.TranslateRequest(
            texts=texts[i : i + batch], source_language="en", target_language="es"
        )
        await stub.Translate(request)
    return len(texts) / (time.perf_counter() - start)


async def chat_latencies(stub: nlp_pb2_grpc.NlpAsyncStub, script: list[str]) -> list[float]:
    session, times = "", []
    for line in script:
        start = time.perf_counter()
        reply = await stub.Chat(nlp_pb2.ChatTurn(session_id=session, text=line))
        times.append(time.perf_counter() - start)
        session = reply.session_id
    return times


async def native_against_mt(
    service: NlpService, stub: nlp_pb2_grpc.NlpAsyncStub, runs: int
) -> None:
    """The Spanish chat with the Spanish texts, and with only English ones (all MT)."""
    assistant, translator = service.servicer.assistant, service.servicer.translator
    assert assistant is not None and translator is not None
    native_prompts, native_entries = assistant.prompts, assistant.knowledge.entries
    english_prompts = PromptBook({"en": native_prompts.english})
    english_entries = [dataclasses.replace(e, answers={}, titles={}) for e in native_entries]
    cache = translator.cache
    translator.cache = type(cache)(0)
    times: dict[str, list[float]] = {"native": [], "machine_translation": []}
    sources: dict[str, set[str]] = {"native": set(), "machine_translation": set()}
    for _ in range(runs):
        for mode in ("native", "machine_translation"):  # alternated: no order effect
            native = mode == "native"
            assistant.prompts = native_prompts if native else english_prompts
            assistant.knowledge.entries = native_entries if native else english_entries
            session = ""
            for line in SPANISH_CHAT:
                start = time.perf_counter()
                reply = await stub.Chat(nlp_pb2.ChatTurn(session_id=session, text=line))
                times[mode].append(time.perf_counter() - start)
                session = reply.session_id
                sources[mode].add(reply.text_source)
    assistant.prompts, assistant.knowledge.entries = native_prompts, native_entries
    translator.cache = cache
    base = statistics.median(times["machine_translation"])
    print(f"\n   Spanish replies, {runs} conversations each (translation cache off)")
    for mode, values in times.items():
        median = statistics.median(values)
        print(
            f"   {mode:20} median {median * 1000:6.1f} ms   p95 {p95(values) * 1000:6.1f} ms"
            f"   {median / base:5.2f}x   text_source {sorted(sources[mode])}"
        )


async def takeover_latency(
    service: NlpService, stub: nlp_pb2_grpc.NlpAsyncStub, url: str, n: int
) -> None:
    """Message latency through WatchChats, written here (woken) or by another replica
    (a second inbox on the same database: only the watch's poll finds it)."""
    reply = await stub.Chat(nlp_pb2.ChatTurn(text="Can I talk to a human please?"))
    session = reply.session_id
    claimed = await stub.ClaimChat(nlp_pb2.ClaimChatRequest(session_id=session, salesperson="Ana"))
    other = ChatInbox(create_engine(url))
    visitor = stub.WatchChats(
        nlp_pb2.WatchChatsRequest(session_id=session, after_seq=claimed.messages[-1].seq)
    )
    inbox = stub.WatchChats(nlp_pb2.WatchChatsRequest(salesperson="Ana"))
    await asyncio.gather(visitor.initial_metadata(), inbox.initial_metadata())
    visitor_events, inbox_events = visitor.__aiter__(), inbox.__aiter__()

    async def arrival(stream: AsyncIterator[nlp_pb2.ChatEvent], text: str) -> float:
        async for event in stream:
            if event.HasField("message") and event.message.text == text:
                return time.perf_counter()
        raise AssertionError("the stream ended")

    results: dict[str, list[float]] = {
        k: [] for k in ("to visitor", "to salesperson", "other replica")
    }
    for i in range(n):
        text = f"salesperson message {i}"
        start = time.perf_counter()
        waiting = asyncio.create_task(arrival(visitor_events, text))
        await stub.SendSalespersonMessage(
            nlp_pb2.SalespersonMessage(session_id=session, salesperson="Ana", text=text)
        )
        results["to visitor"].append(await waiting - start)
        text = f"visitor message {i}"
        start = time.perf_counter()
        waiting = asyncio.create_task(arrival(inbox_events, text))
        await stub.Chat(nlp_pb2.ChatTurn(session_id=session, text=text))
        results["to salesperson"].append(await waiting - start)
        text = f"from another replica {i}"
        await asyncio.sleep(random.uniform(0, 0.5))  # anywhere in the watch's poll cycle
        start = time.perf_counter()
        waiting = asyncio.create_task(arrival(visitor_events, text))
        await asyncio.to_thread(other.send, session, "Ana", Said(SALESPERSON, text, author="Ana"))
        results["other replica"].append(await waiting - start)
    visitor.cancel()
    inbox.cancel()
    print(f"\n4. takeover message latency ({n} messages each way; watch poll 0.5 s)")
    for name, values in results.items():
        print(
            f"   {name:16} median {statistics.median(values) * 1000:6.1f} ms"
            f"   p95 {p95(values) * 1000:6.1f} ms"
        )


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def retrieval(settings: Settings) -> None:
    from percept.models import model_store

    embedder = MiniLMEmbedder(model_store(settings).resolve("all-minilm-l6-v2").path)
    kb = KnowledgeBase(load_entries(), embedder)
    held_out = yaml.safe_load((HERE / "knowledge_paraphrases.yaml").read_text())
    threshold = settings.nlp_answer_threshold
    top1 = right = wrong = off_topic = answerable = unanswerable = 0
    for gold, questions in held_out.items():
        for question in questions:
            named = [e.normalized for e in extract_entities(question) if e.type == "product"]
            best = kb.search(question, 1, product=named[0] if named else "")[0]  # as in chat
            if gold == "none":
                unanswerable += 1
                off_topic += best.score >= threshold
                continue
            answerable += 1
            top1 += best.entry.id == gold
            right += best.entry.id == gold and best.score >= threshold
            wrong += best.entry.id != gold and best.score >= threshold
    print(f"\n3. retrieval on {answerable} held-out paraphrases + {unanswerable} off-topic")
    print(f"   top-1 accuracy            {top1 / answerable:.1%} ({top1}/{answerable})")
    print(f"   answered right at {threshold}   {right}/{answerable}")
    print(f"   answered wrong at {threshold}   {wrong}/{answerable}")
    print(f"   off-topic answered        {off_topic}/{unanswerable}")


async def main(n_texts: int, chats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            log_format="text",
            leads_address="127.0.0.1:9",
            metrics_enabled=False,
            nlp_chat_per_minute=100_000,  # the takeover's one session sends many
            nlp_chat_burst=1000,
        )
        host = ServiceHost(NlpService(settings), settings, port=0, metrics_port=0)
        await host.start()
        await asyncio.wait_for(host.ready.wait(), 300)
        service = host.service
        assert isinstance(service, NlpService) and service.servicer.translator is not None
        translator = service.servicer.translator
        async with grpc.aio.insecure_channel(host.address) as channel:
            stub = nlp_pb2_grpc.NlpStub(channel)
            texts = sentences(n_texts)
            cli = cli_per_text(texts[:24])
            translator.cache = type(translator.cache)(0)
            batched = await translate_rate(stub, texts, 32)
            single = await translate_rate(stub, texts[:64], 1)
            translator.cache = type(translator.cache)(100_000)
            await translate_rate(stub, texts, 32)
            cached = await translate_rate(stub, texts, 32)
            print(f"1. translation en->es, {len(texts)} distinct sentences")
            print(f"   apertium CLI per text     {1 / cli:8.1f} texts/s  (baseline)")
            print(f"   service, 1 text per call  {single:8.1f} texts/s  {single * cli:6.1f}x")
            print(f"   service, batches of 32    {batched:8.1f} texts/s  {batched * cli:6.1f}x")
            print(f"   service, cached repeats   {cached:8.1f} texts/s  {cached * cli:6.1f}x")

            english: list[float] = []
            spanish: list[float] = []
            await chat_latencies(stub, ENGLISH_CHAT[:2])  # warm-up
            for _ in range(chats):
                english += await chat_latencies(stub, ENGLISH_CHAT)
                spanish += await chat_latencies(stub, SPANISH_CHAT)
            print(f"\n2. chat-turn latency over gRPC ({chats} conversations each)")
            for name, values in (("English", english), ("Spanish", spanish)):
                print(
                    f"   {name:8} median {statistics.median(values) * 1000:6.1f} ms"
                    f"   p95 {p95(values) * 1000:6.1f} ms   ({len(values)} turns)"
                )
            await native_against_mt(service, stub, chats)
            await takeover_latency(service, stub, f"sqlite:///{Path(tmp) / 'chat-sessions.db'}", 20)
        await host.stop(grace=1)
        retrieval(settings)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--chats", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.texts, args.chats))
