"""The demo's story, played through the real gRPC APIs of the four services.

Ana García, a purchasing director, (1) phones about laptops: her call,
synthesised with espeak-ng, streams into speech at real-time pace; (2) chats on
the website in Spanish, giving the same phone number and an e-mail; (3) signs up
for the loyalty programme at the store's desk (consenting to be recognised) and
lingers at the laptops. (4) Leads has fused the three channels into one lead.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from rich.console import Console
from rich.table import Table

from percept.demo import media
from percept.speech.client import RATE, call_requests
from percept.v1 import (
    common_pb2,
    leads_pb2,
    leads_pb2_grpc,
    nlp_pb2,
    nlp_pb2_grpc,
    speech_pb2_grpc,
    vision_pb2,
    vision_pb2_grpc,
)
from percept.v1 import speech_pb2 as sp
from percept.vision.client import lockstep

PHONE, EMAIL = "+34612345678", "ana.garcia@empresa.example"
CAMPAIGN = "spring-laptops"
CALL = (
    "Hello, this is Ana Garcia from Acme.",
    "I want to buy ten laptops for our new office.",
    "We have fifteen thousand euros for this purchase.",
    "We need them next month. Please call me back.",
)
# The chat tests check this conversation too (every slot filled, phone included).
CHAT = (
    "¿Cuánto cuesta el portátil?",
    "Necesitamos diez portátiles.",
    "Los necesitamos el mes que viene.",
    "Tenemos un presupuesto de 15000 euros.",
    "Soy la directora de compras y yo tomo la decisión.",
    "Me llamo Ana García.",
    "Mi correo es ana.garcia@empresa.example y mi teléfono es +34 612 34 56 78",
)
CAMERA = "store-front"
COLOURS = {"hot": "bold red", "warm": "yellow", "cold": "blue"}


@dataclass(frozen=True)
class Addresses:
    speech: str
    vision: str
    nlp: str
    leads: str


@dataclass
class Outcome:
    """What the story left in leads, for the summary and the end-to-end test."""

    lead: leads_pb2.Lead
    explanation: leads_pb2.ScoreExplanation
    leads: list[leads_pb2.Lead] = field(default_factory=list)


def synthesise(sentences: Sequence[str], folder: Path) -> np.ndarray:
    """The call's audio: espeak-ng speech, 16 kHz mono int16, with pauses between sentences."""
    from percept.speech.audio import decode_file, pcm16

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("the demo call is spoken by espeak-ng: apt-get install espeak-ng")
    gap = np.zeros(int(1.0 * RATE), np.int16)
    parts = []
    for i, sentence in enumerate(sentences):
        wav = folder / f"{i}.wav"
        subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(wav), sentence], check=True)
        parts += [pcm16(decode_file(io.BytesIO(wav.read_bytes()), "WAV")), gap]
    return np.concatenate([*parts, gap])


class Story:
    def __init__(
        self,
        addresses: Addresses,
        console: Console,
        *,
        fast: bool = False,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.addresses, self.console, self.fast = addresses, console, fast
        self.metadata = tuple(metadata)

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    async def play(self) -> Outcome:
        with tempfile.TemporaryDirectory(prefix="percept-demo-") as tmp:
            self.say("\n[bold]1. A phone call[/] (espeak-ng speech, streamed at real-time pace)")
            await self.call(Path(tmp))
        self.say("\n[bold]2. The same person chats on the website, in Spanish[/]")
        await self.chat()
        self.say("\n[bold]3. She visits the store[/] (a camera sequence made from a real photo)")
        await self.visit()
        self.say("\n[bold]4. One lead, from three channels[/]")
        return await self.report()

    async def call(self, folder: Path) -> None:
        pcm = await asyncio.to_thread(synthesise, CALL, folder)
        config = sp.RecognitionConfig(
            encoding=sp.AUDIO_ENCODING_LINEAR16,
            sample_rate_hz=RATE,
            language_code="en",
            call_id="demo-call-1",
            caller=common_pb2.IdentityKeys(phone=PHONE),  # the call center knows the caller id
            campaign_id=CAMPAIGN,
            interim_results=True,
        )
        async with grpc.aio.insecure_channel(self.addresses.speech) as channel:
            stub = speech_pb2_grpc.SpeechStub(channel)
            call = stub.StreamingRecognize(
                call_requests(config, pcm.astype("<i2").tobytes(), self.fast),
                metadata=self.metadata,
            )
            async for event in call:
                if event.type == sp.RecognitionEvent.EVENT_TYPE_PARTIAL:
                    self.say(f"   [dim]… {event.transcript}[/]")
                elif event.type == sp.RecognitionEvent.EVENT_TYPE_FINAL:
                    self.say(f"   [bold]caller:[/] {event.transcript}")
                    for i in event.intents:
                        self.say(f"          intent [green]{i.name}[/] {i.confidence:.2f}")
                    for e in event.entities:
                        self.say(f"          {e.type} [cyan]{e.normalized_value}[/]")

    async def chat(self) -> None:
        async with grpc.aio.insecure_channel(self.addresses.nlp) as channel:
            stub = nlp_pb2_grpc.NlpStub(channel)
            session = ""
            for text in CHAT:
                reply = await stub.Chat(
                    nlp_pb2.ChatTurn(session_id=session, text=text, campaign_id=CAMPAIGN),
                    metadata=self.metadata,
                )
                session = reply.session_id
                self.say(f"   [bold]visitor:[/] {text}")
                self.say(f"   [bold]assistant:[/] {reply.text}")
            filled = ", ".join(f"{s.name}={s.value}" for s in reply.qualification if s.filled)
            self.say(f"   [dim]qualified: {filled}[/]")

    async def visit(self) -> None:
        from percept.vision.images import encode_jpeg

        person = media.astronaut_person()
        # Walks in, stays about half a minute at the laptops (0.6-0.85 of the view), leaves.
        xs = [20, 80, 140, 220, 300, 380]
        xs += [430 + (6 if i % 2 else 0) for i in range(16)] + [520, 600, 680]
        frames = media.walk(person, xs, height=440)
        start = time.time() - 2.0 * len(frames)  # capture times: a frame every 2 s, just past
        async with grpc.aio.insecure_channel(self.addresses.vision) as channel:
            stub = vision_pb2_grpc.VisionStub(channel)
            enrolled = await stub.Enroll(
                vision_pb2.EnrollRequest(
                    image=vision_pb2.Image(encoded=encode_jpeg(media.astronaut())),
                    consent_reference="loyalty programme sign-up at the front desk",
                    identity=common_pb2.IdentityKeys(phone=PHONE, email=EMAIL),
                    camera_id=CAMERA,
                ),
                metadata=self.metadata,
            )
            self.say(
                f"   at the desk she joins the loyalty programme and consents to be recognised "
                f"([dim]{enrolled.face_identity_id}[/])"
            )

            def camera() -> Iterator[vision_pb2.Frame]:
                for i, image in enumerate(frames):
                    jpeg = vision_pb2.Image(encoded=encode_jpeg(image))
                    frame = vision_pb2.Frame(camera_id=CAMERA, sequence=i, image=jpeg)
                    frame.captured_at.FromNanoseconds(round((start + 2.0 * i) * 1e9))
                    yield frame

            recognised = False
            async for result in lockstep(stub, camera(), self.metadata):  # every frame
                if not recognised and any(f.enrolled for f in result.faces):
                    recognised = True
                    self.say("   camera: [green]a consenting visitor recognised[/]")
                for e in result.zone_events:
                    if e.type == vision_pb2.ZoneEvent.EVENT_TYPE_ENTER:
                        self.say(f"   camera: visitor entered [cyan]{e.zone}[/]")
                    else:
                        dwell = e.dwell.ToTimedelta().total_seconds()
                        self.say(f"   camera: visitor left [cyan]{e.zone}[/] after {dwell:.0f} s")

    async def report(self, timeout_s: float = 60.0) -> Outcome:
        async with grpc.aio.insecure_channel(self.addresses.leads) as channel:
            stub = leads_pb2_grpc.LeadsStub(channel)
            lead = await self._fused(stub, timeout_s)
            explanation = await stub.ExplainScore(
                leads_pb2.ExplainScoreRequest(lead_id=lead.lead_id), metadata=self.metadata
            )
            page = await stub.ListLeads(
                leads_pb2.ListLeadsRequest(page_size=20), metadata=self.metadata
            )
        self.console.print(_leads_table(list(page.leads)))
        self.say(f"\n[bold]Why lead {lead.lead_id[:8]} scores {explanation.score:.2f}:[/]")
        for c in explanation.contributions[:8]:
            self.say(f"   {c.contribution:+.2f}  {c.description}")
        return Outcome(lead, explanation, list(page.leads))

    async def _fused(self, stub: leads_pb2_grpc.LeadsAsyncStub, timeout_s: float) -> leads_pb2.Lead:
        """Ana's lead once all three channels are in and the outboxes have drained
        (its signal count unchanged for a second)."""
        deadline = time.monotonic() + timeout_s
        wanted = {common_pb2.SOURCE_SPEECH, common_pb2.SOURCE_CHAT, common_pb2.SOURCE_VISION}
        lead, counts = None, [-1]
        while time.monotonic() < deadline:
            page = await stub.ListLeads(leads_pb2.ListLeadsRequest(), metadata=self.metadata)
            lead = next((x for x in page.leads if x.identity.phone == PHONE), None)
            if lead is not None and wanted <= set(lead.channels):
                counts.append(lead.signal_count)
                if counts[-5:] == [lead.signal_count] * 5:
                    break
            await asyncio.sleep(0.2)
        if lead is None:
            raise RuntimeError("no lead for the demo's caller reached leads")
        return lead


def _leads_table(leads: list[leads_pb2.Lead]) -> Table:
    from percept.leads.scoring import CHANNEL_NAMES

    table = Table(title="leads")
    for column in ("lead", "class", "score", "product", "stage", "channels", "phone", "e-mail"):
        table.add_column(column)
    for lead in leads:
        name = leads_pb2.LeadClass.Name(lead.lead_class).removeprefix("LEAD_CLASS_").lower()
        stage = leads_pb2.LeadStage.Name(lead.stage).removeprefix("LEAD_STAGE_").lower()
        table.add_row(
            lead.lead_id[:8],
            f"[{COLOURS.get(name, '')}]{name}[/]",
            f"{lead.score:.2f}",
            lead.product_interest,
            stage,
            ", ".join(CHANNEL_NAMES.get(c, "?") for c in lead.channels),
            lead.identity.phone,
            lead.identity.email,
        )
    return table
