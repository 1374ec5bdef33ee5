"""StreamingRecognize on the real packaged Whisper tiny.en weights and real (espeak-ng) speech."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from itertools import pairwise

import av
import grpc
import numpy as np
import pytest
from speech_audio import MAX_WER, float_wav, pcm16k, speak, wav_bytes, wer

from percept.runtime.server import ServiceHost
from percept.runtime.settings import Settings
from percept.speech.service import SpeechService
from percept.v1 import speech_pb2 as sp
from percept.v1 import speech_pb2_grpc

pytestmark = pytest.mark.slow
Event = sp.RecognitionEvent
FIRST = "I would like to purchase two laptops. My budget is $2,000."
SECOND = "Can we schedule a demo next week?"
GAP_S = 1.5
RATE = 16000


@pytest.fixture(scope="module")
def call_audio(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """A caller says two things with a pause between: 16 kHz int16."""
    folder = tmp_path_factory.mktemp("call")
    first = pcm16k(speak(FIRST, folder / "a.wav"))
    second = pcm16k(speak(SECOND, folder / "b.wav"))
    gap = np.zeros(int(GAP_S * RATE), np.int16)
    return np.concatenate([gap[: RATE // 2], first, gap, second, gap[: RATE // 2]])


@pytest.fixture
async def serve(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[Callable[..., ServiceHost]]:
    hosts: list[ServiceHost] = []

    def start(**overrides: object) -> ServiceHost:
        settings = make_settings(**overrides)
        host = ServiceHost(SpeechService(settings), settings)
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        await host.stop(grace=1)


@pytest.fixture
async def stub(
    serve: Callable[..., ServiceHost],
) -> AsyncIterator[speech_pb2_grpc.SpeechAsyncStub]:
    host = serve()
    await host.start()
    await asyncio.wait_for(host.ready.wait(), 120)
    async with grpc.aio.insecure_channel(host.address) as channel:
        yield speech_pb2_grpc.SpeechStub(channel)


def linear16(interim: bool = True) -> sp.RecognitionConfig:
    return sp.RecognitionConfig(
        encoding=sp.AUDIO_ENCODING_LINEAR16, sample_rate_hz=RATE, interim_results=interim
    )


def requests(
    config: sp.RecognitionConfig | None, chunks: Iterable[bytes]
) -> list[sp.StreamingRecognizeRequest]:
    first = [] if config is None else [sp.StreamingRecognizeRequest(config=config)]
    return first + [sp.StreamingRecognizeRequest(audio_content=c) for c in chunks]


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def stream(
    stub: speech_pb2_grpc.SpeechAsyncStub, messages: list[sp.StreamingRecognizeRequest]
) -> list[Event]:
    return [event async for event in stub.StreamingRecognize(iter(messages))]


def seconds(d: object) -> float:
    return float(d.ToNanoseconds()) / 1e9  # type: ignore[attr-defined]


async def test_a_call_streams_partials_then_a_final_per_utterance(
    stub: speech_pb2_grpc.SpeechAsyncStub, call_audio: np.ndarray
) -> None:
    chunks = split(call_audio.tobytes(), RATE // 10 * 2)  # 100 ms chunks
    events = await stream(stub, requests(linear16(), chunks))
    finals = [e for e in events if e.type == Event.EVENT_TYPE_FINAL]
    assert [f.utterance_index for f in finals] == [0, 1], [f.transcript for f in finals]
    assert wer(FIRST, finals[0].transcript) <= MAX_WER, finals[0].transcript
    assert wer(SECOND, finals[1].transcript) <= MAX_WER, finals[1].transcript
    assert "purchase_intent" in {i.name for i in finals[0].intents}
    assert "demo_or_meeting_request" in {i.name for i in finals[1].intents}
    assert {"product", "quantity", "money"} <= {e.type for e in finals[0].entities}

    summary = events[-1]  # the stream's last word: what the call came to
    assert [e.type for e in events].count(Event.EVENT_TYPE_CALL_SUMMARY) == 1
    assert summary.type == Event.EVENT_TYPE_CALL_SUMMARY
    (side,) = summary.summary.roles
    assert side.utterances == 2 and side.words == sum(len(f.words) for f in finals)
    talk = sum(seconds(f.end_offset) - seconds(f.start_offset) for f in finals)
    assert seconds(side.talk_time) == pytest.approx(talk, abs=0.01)
    assert 60 < side.words_per_minute < 300
    said = [e for e in events[:-1] if e.type != Event.EVENT_TYPE_CATEGORY]
    categories = [e for e in events if e.type == Event.EVENT_TYPE_CATEGORY]
    # the customer (a mono call's caller) wants to buy: the category follows that final
    (buying,) = [c for c in categories if c.category.name == "buying_signal"]
    assert events[events.index(buying) - 1] == finals[0] and buying.category.utterance_index == 0
    for index, final in enumerate(finals):
        mine = [e for e in said if e.utterance_index == index]
        kinds = [e.type for e in mine]
        # partials while speech goes on, then end of utterance, then the final
        assert kinds[-2:] == [Event.EVENT_TYPE_END_OF_UTTERANCE, Event.EVENT_TYPE_FINAL], kinds
        partials = [e for e in mine if e.type == Event.EVENT_TYPE_PARTIAL]
        assert len(partials) >= 2 and kinds[: len(partials)] == [Event.EVENT_TYPE_PARTIAL] * len(
            partials
        )
        stable = [p.stable_prefix for p in partials]
        assert all(b.startswith(a) for a, b in pairwise(stable)), stable
        assert all(p.transcript.startswith(p.stable_prefix) for p in partials)
        assert stable[-1], "nothing became stable during the utterance"
        assert wer(final.transcript, partials[-1].transcript) <= 0.5
        word_starts = [seconds(w.start_offset) for w in final.words]
        assert word_starts == sorted(word_starts) and len(word_starts) >= 5
        assert all(0 < w.confidence <= 1 for w in final.words)
        assert final.language_code == "en"
    # word times are in stream time: the second utterance starts after the first and the gap
    first_end = seconds(finals[0].words[-1].end_offset)
    second_start = seconds(finals[1].words[0].start_offset)
    assert second_start - first_end > GAP_S - 0.5
    assert seconds(finals[1].end_offset) <= len(call_audio) / RATE


async def test_without_interim_results_only_ends_and_finals_come(
    stub: speech_pb2_grpc.SpeechAsyncStub, call_audio: np.ndarray
) -> None:
    events = await stream(stub, requests(linear16(False), split(call_audio.tobytes(), 3200)))
    said = [e.type for e in events if e.type != Event.EVENT_TYPE_CATEGORY]
    assert said == [
        Event.EVENT_TYPE_END_OF_UTTERANCE,
        Event.EVENT_TYPE_FINAL,
    ] * 2 + [Event.EVENT_TYPE_CALL_SUMMARY]


async def test_wav_and_ogg_opus_stream_in_arbitrary_chunks(
    stub: speech_pb2_grpc.SpeechAsyncStub, call_audio: np.ndarray
) -> None:
    wav = wav_bytes(call_audio)
    opus = io.BytesIO()
    with av.open(opus, "w", format="ogg") as container:
        out = container.add_stream("libopus", rate=48000)
        frame = av.AudioFrame.from_ndarray(call_audio.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        for f in [*resampler.resample(frame), *resampler.resample(None)]:
            container.mux(out.encode(f))
        container.mux(out.encode(None))
    for encoding, data in (
        (sp.AUDIO_ENCODING_WAV, wav),
        (sp.AUDIO_ENCODING_OGG_OPUS, opus.getvalue()),
    ):
        config = sp.RecognitionConfig(encoding=encoding)
        events = await stream(stub, requests(config, split(data, 1001)))  # frames split too
        finals = [e.transcript for e in events if e.type == Event.EVENT_TYPE_FINAL]
        assert len(finals) == 2, (encoding, finals)
        assert wer(FIRST + " " + SECOND, " ".join(finals)) <= MAX_WER, finals


async def test_silence_only_gives_no_result_and_no_error(
    stub: speech_pb2_grpc.SpeechAsyncStub,
) -> None:
    quiet = np.zeros(3 * RATE, np.int16).tobytes()
    (summary,) = await stream(stub, requests(linear16(), split(quiet, 3200)))
    # a call with no speech has a summary of zeros and the silence, not an error
    assert summary.type == Event.EVENT_TYPE_CALL_SUMMARY and not summary.summary.roles
    assert seconds(summary.summary.duration) == pytest.approx(3.0)
    assert seconds(summary.summary.non_talk_time) == pytest.approx(3.0)
    assert summary.summary.silences == 1 and summary.summary.interruptions == 0


def audio_first() -> list[sp.StreamingRecognizeRequest]:
    return requests(None, [b"\x00\x00"])


@pytest.mark.parametrize(
    ("messages", "words_in_error"),
    [
        ([], "the first message must carry config (got nothing)"),
        (audio_first(), "the first message must carry config (got audio_content)"),
        (
            requests(linear16(), [b"\x00\x00"]) + requests(linear16(), []),
            "message 3: config may only be sent once",
        ),
        (
            requests(sp.RecognitionConfig(encoding=42), []),  # type: ignore[arg-type]
            "config.encoding: unknown value 42",
        ),
        (
            requests(sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_LINEAR16), []),
            "config.sample_rate_hz: 0 is not between 8000 and 192000",
        ),
        (
            requests(
                sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_LINEAR16, sample_rate_hz=10**9), []
            ),
            "config.sample_rate_hz: 1000000000 is not between",
        ),
        (
            requests(linear16(), [b"\x00\x00", b"\x00\x00\x00"]),
            "a chunk of 3 bytes (at byte 2) is not a whole number of 16-bit frames",
        ),
        (
            requests(sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_WAV), [b"garbage!" * 100]),
            "not a readable WAV stream (no RIFF/WAVE header)",
        ),
        (
            requests(
                sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_OGG_OPUS), [b"garbage!" * 500]
            ),
            "not a readable Ogg-Opus stream",
        ),
        (
            # one NaN would poison the resampler and VAD: every later word was lost
            requests(
                sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_WAV),
                split(float_wav(np.concatenate([np.zeros(8000), [np.nan], np.zeros(8000)])), 4000),
            ),
            "float samples that are not numbers (NaN or infinity)",
        ),
        (
            [sp.StreamingRecognizeRequest()],
            "the first message must carry config (got a message with neither config nor "
            "audio_content)",
        ),
        (
            requests(
                sp.RecognitionConfig(
                    encoding=sp.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16000, model="large-v3"
                ),
                [],
            ),
            "config.model: 'large-v3' is not served here; this server runs 'whisper-tiny.en'",
        ),
        (
            requests(
                sp.RecognitionConfig(
                    encoding=sp.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16000, language_code="de-DE"
                ),
                [],
            ),
            "config.language_code: 'de-DE', but whisper-tiny.en understands English only",
        ),
        (
            requests(
                sp.RecognitionConfig(
                    encoding=sp.AUDIO_ENCODING_LINEAR16,
                    sample_rate_hz=16000,
                    language_code="english!",
                ),
                [],
            ),
            "config.language_code: 'english!' is not a BCP-47 code",
        ),
    ],
    ids=[
        "empty-stream",
        "no-config-first",
        "config-twice",
        "unknown-encoding",
        "rate-zero",
        "rate-absurd",
        "odd-bytes",
        "garbage-wav",
        "garbage-ogg",
        "nan-in-float-wav",
        "empty-first-message",
        "unknown-model",
        "language-not-in-model",
        "language-not-bcp47",
    ],
)
async def test_bad_streams_get_a_precise_invalid_argument(
    serve: Callable[..., ServiceHost],
    messages: list[sp.StreamingRecognizeRequest],
    words_in_error: str,
) -> None:
    await _refused(serve, messages, grpc.StatusCode.INVALID_ARGUMENT, words_in_error)


@pytest.mark.parametrize(
    ("messages", "words_in_error"),
    [
        (
            requests(linear16(), [b"\x00\x00" * 1024, b"\x00\x00" * 4096]),
            "message 3: audio_content of 8192 bytes is over the 4096-byte chunk limit",
        ),
        (
            # 17 chunks are 2.125 s, over a 2 s limit: the 18th is refused.
            requests(linear16(), [b"\x00\x00" * 2000] * 18),
            "the stream is over 2 s of audio; start a new stream",
        ),
        (
            # The client goes on sending after the refused chunk. Ending the call with
            # those chunks in flight made grpcio's client report its own INTERNAL;
            # the server now reads them (briefly) before it answers.
            requests(linear16(), [b"\x00\x00" * 2000] * 200),
            "the stream is over 2 s of audio; start a new stream",
        ),
    ],
    ids=["chunk-too-big", "stream-too-long", "stream-too-long-client-still-sending"],
)
async def test_streams_over_a_limit_get_resource_exhausted(
    serve: Callable[..., ServiceHost],
    messages: list[sp.StreamingRecognizeRequest],
    words_in_error: str,
) -> None:
    await _refused(serve, messages, grpc.StatusCode.RESOURCE_EXHAUSTED, words_in_error)


async def _refused(
    serve: Callable[..., ServiceHost],
    messages: list[sp.StreamingRecognizeRequest],
    code: grpc.StatusCode,
    words_in_error: str,
) -> None:
    host = serve(speech_max_chunk_bytes=4096, speech_max_stream_s=2)
    await host.start()
    await asyncio.wait_for(host.ready.wait(), 120)
    async with grpc.aio.insecure_channel(host.address) as channel:
        stub = speech_pb2_grpc.SpeechStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stream(stub, messages)
        assert error.value.code() == code
        assert words_in_error in (error.value.details() or "")
        # and the server goes on serving
        quiet = np.zeros(RATE, np.int16).tobytes()
        events = await stream(stub, requests(linear16(), split(quiet, 3200)))
        assert [e.type for e in events] == [Event.EVENT_TYPE_CALL_SUMMARY]


def decoder_threads() -> int:
    return sum(t.name.startswith("decode-") for t in threading.enumerate())


async def paced(
    config: sp.RecognitionConfig, data: bytes, chunk: int, pause_s: float
) -> AsyncIterator[sp.StreamingRecognizeRequest]:
    yield sp.StreamingRecognizeRequest(config=config)
    for piece in split(data, chunk):
        await asyncio.sleep(pause_s)
        yield sp.StreamingRecognizeRequest(audio_content=piece)


async def test_cancel_and_deadline_free_the_stream(
    stub: speech_pb2_grpc.SpeechAsyncStub, call_audio: np.ndarray
) -> None:
    wav = wav_bytes(call_audio)
    before = decoder_threads()
    flac_config = sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_FLAC)
    flac = io.BytesIO()
    with av.open(flac, "w", format="flac") as container:
        out = container.add_stream("flac", rate=RATE)
        frame = av.AudioFrame.from_ndarray(call_audio.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        container.mux(out.encode(frame))
        container.mux(out.encode(None))

    call = stub.StreamingRecognize(paced(flac_config, flac.getvalue(), 2000, 0.05))
    await asyncio.sleep(1.0)
    assert decoder_threads() == before + 1  # FLAC decodes in a thread of the call's own
    call.cancel()
    assert await call.code() == grpc.StatusCode.CANCELLED
    for _ in range(50):
        if decoder_threads() == before:
            break
        await asyncio.sleep(0.1)
    assert decoder_threads() == before

    slow = stub.StreamingRecognize(
        paced(sp.RecognitionConfig(encoding=sp.AUDIO_ENCODING_WAV), wav, 3200, 0.1), timeout=1.0
    )
    with pytest.raises(grpc.aio.AioRpcError) as error:
        _ = [e async for e in slow]
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # the server is fine: a whole call still goes through
    events = await stream(stub, requests(linear16(False), split(call_audio.tobytes(), 3200)))
    assert sum(e.type == Event.EVENT_TYPE_FINAL for e in events) == 2


async def test_concurrent_calls_share_the_model_and_all_get_their_finals(
    stub: speech_pb2_grpc.SpeechAsyncStub, call_audio: np.ndarray
) -> None:
    data = call_audio.tobytes()
    results = await asyncio.gather(
        *(stream(stub, requests(linear16(), split(data, 3200))) for _ in range(3))
    )
    for events in results:
        finals = [e.transcript for e in events if e.type == Event.EVENT_TYPE_FINAL]
        assert len(finals) == 2 and wer(FIRST + " " + SECOND, " ".join(finals)) <= MAX_WER
