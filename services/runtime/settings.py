"""Settings for every service, read from `PERCEPT_*` environment variables.

One settings object serves all four services so that `percept serve all` and a
single-service pod read the same variables; validation happens at start so a
typo fails loudly instead of surfacing as a strange runtime error.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from percept.runtime.auth import parse_api_key
from percept.understanding.redaction_kinds import DEFAULT_KINDS as DEFAULT_REDACTION
from percept.understanding.redaction_kinds import RedactionKindError, parse_kinds

SERVICE_NAMES: tuple[str, ...] = ("speech", "vision", "nlp", "leads")

Port = Annotated[int, Field(ge=0, le=65535)]
MIB = 1024 * 1024
# Languages the nlp service detects unless told otherwise: the suite's customers'
# so far. Fewer languages, fewer confusions (and 550 MB of models, not 900 MB).
NLP_LANGUAGES = (
    "en", "es", "fr", "de", "it", "pt", "nl", "ca", "pl", "sv", "da",
    "ru", "uk", "tr", "ar", "zh", "ja", "ko", "hi", "ro", "cs", "el",
)  # fmt: skip


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "percept"


class Settings(BaseSettings):
    """All `PERCEPT_*` settings. Port 0 asks the OS for a free port (tests)."""

    model_config = SettingsConfigDict(env_prefix="PERCEPT_", extra="ignore")

    host: str = Field("127.0.0.1", description="address the gRPC servers bind to")
    speech_port: Port = 50051
    vision_port: Port = 50052
    nlp_port: Port = 50053
    leads_port: Port = 50054

    metrics_host: str = "127.0.0.1"
    metrics_enabled: bool = True
    speech_metrics_port: Port = 9101
    vision_metrics_port: Port = 9102
    nlp_metrics_port: Port = 9103
    leads_metrics_port: Port = 9104

    # Plain-text ports serving only gRPC health (0: none). With TLS on, kubelet probes
    # (which cannot speak TLS) use these.
    speech_health_port: Port = 0
    vision_health_port: Port = 0
    nlp_health_port: Port = 0
    leads_health_port: Port = 0

    tls_cert_file: Path | None = Field(None, description="PEM certificate chain of this server")
    tls_key_file: Path | None = Field(None, description="PEM private key of that certificate")
    tls_client_ca_file: Path | None = Field(
        None, description="PEM CA bundle; when set, callers must present a certificate it signed"
    )
    tls_ca_file: Path | None = Field(
        None, description="PEM CA bundle this service trusts when it calls another percept service"
    )

    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated API keys, each KEY or KEY:scope+scope (perceive, ingest, "
        "read, admin); when set, every call but health needs one with the method's scope; "
        "the first is the one this process presents to other services",
    )

    leads_address: str = Field(
        "127.0.0.1:50054",
        description="where perception services send signals; in Kubernetes the headless Service",
    )

    vision_address: str = Field(
        "127.0.0.1:50052",
        description="where leads asks vision to erase an erased lead's face embeddings",
    )
    nlp_address: str = Field("127.0.0.1:50053", description="where the console's chat goes")
    speech_address: str = Field(
        "127.0.0.1:50051", description="where the console follows live calls (WatchCalls)"
    )

    # The web console (gateway): leads board, lead pages, cameras, the chat widget.
    console_host: str = Field("127.0.0.1", description="address the console's HTTP server binds")
    console_port: Port = 8080
    console_chat_per_minute: float = Field(
        20.0, gt=0, description="chat messages a minute per chat session (public widget)"
    )
    console_chat_burst: int = Field(5, ge=1, description="chat messages a session may send at once")
    console_chat_per_address_per_minute: float = Field(
        60.0, gt=0, description="chat messages a minute per client address"
    )
    console_chat_address_burst: int = Field(20, ge=1)
    console_chat_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["*"],
        description="comma-separated origins whose pages may embed the chat widget ('*': any)",
    )
    console_trust_forwarded_for: bool = Field(
        False, description="rate-limit by X-Forwarded-For (behind a trusted proxy only)"
    )

    data_dir: Path = Field(default_factory=_default_data_dir)
    model_dir: Path | None = Field(
        None, description="model cache directory; defaults to <data_dir>/models"
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the leads store; defaults to SQLite in data_dir"
    )

    default_phone_region: str = Field(
        "", description="ISO country for phone numbers given without +country code (e.g. US)"
    )
    speech_model: str = Field("whisper-tiny.en", description="model name in the model store")
    understanding_dir: Path | None = Field(
        None,
        description="taxonomy.yaml, intent_examples.yaml and/or catalog.yaml overriding "
        "the packaged ones (Kubernetes: the percept-understanding ConfigMap)",
    )
    nlp_languages: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(NLP_LANGUAGES),
        description="comma-separated ISO 639-1 codes the nlp service detects",
    )
    nlp_translation_backends: Annotated[list[Literal["apertium", "transformers"]], NoDecode] = (
        Field(
            default_factory=lambda: ["apertium"],  # type: ignore[arg-type]
            description="comma-separated, preferred first where two can do a pair",
        )
    )
    nlp_apertium_url: str = Field(
        "", description="an apertium-apy server; empty starts one beside the service"
    )
    nlp_apertium_modes_dir: Path = Field(
        Path("/usr/share/apertium/modes"), description="installed Apertium pairs"
    )
    nlp_translation_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated seq2seq model folders in the model dir (MarianMT, "
        "M2M100, NLLB) for the transformers backend",
    )
    nlp_device: Literal["auto", "cpu", "cuda"] = "auto"
    nlp_translation_cache_size: int = Field(20_000, ge=0, description="translations kept")
    nlp_knowledge_file: Path | None = Field(
        None,
        description="the chat assistant's knowledge (YAML or CSV); default: knowledge.yaml "
        "or .csv in understanding_dir, else the packaged demo one",
    )
    nlp_session_store: str = Field(
        "",
        description="chat sessions: empty keeps them in SQLite in data_dir, 'memory' in the "
        "process, or a SQLAlchemy URL (e.g. the leads PostgreSQL)",
    )
    nlp_generator_model: str = Field(
        "",
        description="a causal LM folder in the model dir that rewords knowledge answers "
        "(only grounded text is used); empty sends the answers as written",
    )
    nlp_chat_per_minute: float = Field(
        30.0,
        gt=0,
        description="chat messages a minute one session may send (then RESOURCE_EXHAUSTED)",
    )
    nlp_chat_burst: int = Field(10, ge=1, description="chat messages a session may send at once")
    nlp_session_ttl_s: float = Field(1800.0, gt=0, description="idle time that ends a chat")
    nlp_answer_threshold: float = Field(
        0.45, ge=0, le=1, description="knowledge match (cosine) below which the assistant asks"
    )
    nlp_prompts_dir: Path | None = Field(
        None,
        description="a folder of <language>.yaml files with the assistant's own words "
        "(en.yaml required); default: the packaged English, Spanish and French",
    )
    nlp_handoff_wait_s: float = Field(
        120.0,
        gt=0,
        description="how long a handed-off visitor waits for a salesperson before the chat "
        "promises a callback (a follow-up for leads)",
    )
    nlp_salesperson_presence_s: float = Field(
        30.0,
        gt=0,
        description="a salesperson whose inbox has not been connected for this long is gone: "
        "their chats go back to the waiting list",
    )
    nlp_handoff_webhook_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated URLs (a help desk) told when a chat waits for, is "
        "claimed by or released by a salesperson",
    )
    nlp_handoff_webhook_secret: str = Field(
        "", description="HMAC key that signs the hand-off webhook requests"
    )
    speech_backend: Literal["faster-whisper", "openai-whisper"] = "faster-whisper"
    speech_device: Literal["auto", "cpu", "cuda"] = "auto"
    speech_cpu_threads: int = Field(2, ge=1, le=64)
    speech_max_chunk_bytes: int = Field(1024 * 1024, ge=1024, description="per audio message")
    speech_max_stream_s: float = Field(4 * 3600.0, gt=0, description="audio per stream")
    speech_partial_interval_ms: int = Field(600, ge=100, le=10_000)
    speech_endpoint_silence_ms: int = Field(500, ge=100, le=5_000, description="ends an utterance")
    speech_gateway: bool = Field(
        True,
        description="serve the telephony gateway (Twilio Media Streams and Genesys AudioHook "
        "on speech_gateway_port, Asterisk AudioSocket on speech_audiosocket_port)",
    )
    speech_gateway_port: Port = Field(8090, description="WebSocket port: /twilio, /audiohook")
    speech_audiosocket_port: Port = Field(9092, description="Asterisk AudioSocket (TCP)")
    speech_gateway_max_calls: int = Field(200, ge=1, description="gateway calls at once")
    speech_gateway_max_calls_per_key: int = Field(
        50, ge=1, description="gateway calls one API key may hold at once"
    )
    speech_gateway_idle_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="a call that sends no audio this long is ended"
    )
    speech_gateway_max_frame_bytes: int = Field(
        64 * 1024, ge=1024, le=MIB, description="largest WebSocket or AudioSocket frame"
    )
    speech_gateway_language: str = Field(
        "", description="language of gateway calls that do not say theirs; empty detects it"
    )
    speech_twilio_auth_token: str = Field(
        "", description="Twilio auth token: checks X-Twilio-Signature on /twilio connections"
    )
    speech_audiohook_client_secret: str = Field(
        "",
        description="base64 client secret of the Genesys AudioHook integration: its request "
        "signatures are then required",
    )
    speech_audiosocket_codec: Literal["slin", "mulaw", "alaw"] = Field(
        "slin",
        description="what AudioSocket's 8 kHz audio kind (0x10) carries: signed linear from "
        "the AudioSocket() application, or the channel's G.711 law from the channel driver "
        "or ARI externalMedia",
    )
    speech_audiosocket_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            "127.0.0.0/8",
            "::1/128",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "fc00::/7",
        ],
        description="comma-separated networks AudioSocket connections may come from "
        "(the protocol has no authentication)",
    )
    speech_summary_silence_s: float = Field(
        2.0, gt=0, le=600, description="a call's silences this long count as its non-talk time"
    )
    speech_redact: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_REDACTION),
        description="what calls redact unless their config says: comma-separated of card, "
        "national_id, iban, phone, email, name; 'none' for nothing",
    )
    speech_redacted_contacts_as_keys: bool = Field(
        True,
        description="a phone number or e-mail a caller gives still links the caller's lead "
        "(as an identity key only) when phone or email is redacted",
    )
    vision_detector: Literal["nanodet", "yolo"] = Field(
        "nanodet", description="nanodet (ONNX, COCO, the offline default) or yolo (ultralytics)"
    )
    vision_yolo_model: str = Field(
        "yolo11n",
        description="a catalog name, a .pt/.onnx file in the model dir, or a path to one",
    )
    vision_yolo_image_size: int = Field(640, ge=32, le=4096, description="YOLO input size")
    vision_device: Literal["auto", "cpu", "cuda"] = "auto"
    vision_cpu_threads: int = Field(2, ge=1, le=64)
    vision_min_confidence: float = Field(0.35, gt=0, lt=1, description="detections kept")
    vision_max_pixels: int = Field(
        36_000_000, ge=1, le=170_000_000, description="largest image accepted (width * height)"
    )
    vision_max_fps: float = Field(
        60.0, gt=0, le=1000, description="frames a second one camera stream may send"
    )
    vision_max_batch: int = Field(8, ge=1, le=256, description="frames per detector call")
    vision_batch_wait_ms: float = Field(
        5.0, ge=0, le=1000, description="how long a frame waits for others to batch with"
    )
    vision_cameras_file: Path | None = Field(
        None,
        description="zones per camera (YAML); default: cameras.yaml in understanding_dir, "
        "else the packaged demo cameras",
    )
    vision_cameras_reload_s: float = Field(
        2.0, ge=0, description="how often the cameras file is checked for edits (0: never)"
    )
    vision_faces: Literal["off", "detect", "recognize"] = Field(
        "recognize",
        description="off: no faces; detect: face boxes only; recognize: also match enrolled, "
        "consenting visitors (nobody else's face embedding is ever kept)",
    )
    vision_track_label: str = Field(
        "person", description="the detector class that is tracked and counted in zones"
    )
    vision_face_embedder: Literal["dlib", "facenet"] = Field(
        "dlib",
        description="dlib ResNet (packaged) or facenet InceptionResnetV1 (model dir weights)",
    )
    vision_face_interval_s: float = Field(
        1.0, gt=0, description="how often a tracked person's face is looked at"
    )
    vision_face_match_threshold: float | None = Field(
        None, gt=0, lt=4, description="embedding distance of a match; default: the embedder's"
    )
    vision_face_retention_days: float = Field(
        180.0, gt=0, description="how long an enrolled face embedding is kept"
    )
    vision_gallery_store: str = Field(
        "",
        description="enrolled faces: empty keeps them in SQLite in data_dir, or a SQLAlchemy URL",
    )
    vision_gallery_key: str = Field(
        "",
        description="base64 AES-256 key encrypting the face gallery; empty: a key file in data_dir",
    )
    vision_footfall_store: str = Field(
        "",
        description="footfall minutes: empty keeps them in SQLite in data_dir, or a SQLAlchemy URL",
    )
    vision_footfall_retention_days: float = Field(
        400.0, gt=0, le=3660, description="how long footfall minutes are kept (a year and more)"
    )
    vision_visit_gap_s: float = Field(
        4 * 3600.0, gt=0, description="an enrolled visitor seen after this long is returning"
    )
    leads_half_life_days: float = Field(14.0, gt=0, description="how fast signals fade")
    leads_hot_threshold: float = Field(0.7, gt=0, le=1)
    leads_warm_threshold: float = Field(0.4, gt=0, le=1)
    leads_retention_days: float = Field(730.0, gt=0, description="how long signals are kept")
    leads_max_people_per_key: int = Field(
        3,
        ge=1,
        le=1000,
        description="people one phone, chat or visit may link before it links nobody "
        "(a switchboard, a family address)",
    )
    leads_retention_by_kind: dict[str, float] = Field(
        default_factory=lambda: {"face_seen": 90.0, "returning_visit": 365.0, "dwell": 365.0},
        description='JSON, e.g. {"dwell": 90}: shorter limits for some signal kinds',
    )
    leads_webhook_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated URLs told of class and stage changes"
    )
    leads_follow_up_webhook_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated URLs told of new and overdue follow-ups",
    )
    leads_webhook_secret: str = Field("", description="HMAC key that signs webhook requests")

    max_message_bytes: int = Field(8 * MIB, ge=1024, le=1024 * MIB)
    grace_period_s: float = Field(10.0, ge=0, le=600)
    keepalive_time_s: float = Field(30.0, gt=0)
    keepalive_timeout_s: float = Field(10.0, gt=0)
    max_concurrent_rpcs: int | None = Field(None, ge=1)
    max_streams_per_key: int | None = Field(
        100, ge=1, description="streams one API key may hold open at once (with API keys)"
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator(
        "api_keys",
        "leads_webhook_urls",
        "leads_follow_up_webhook_urls",
        "nlp_handoff_webhook_urls",
        "nlp_languages",
        "nlp_translation_backends",
        "nlp_translation_models",
        "console_chat_origins",
        "speech_audiosocket_networks",
        "speech_redact",
        mode="before",
    )
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("api_keys")
    @classmethod
    def _keys_well_formed(cls, keys: list[str]) -> list[str]:
        for number, key in enumerate(keys, 1):
            parse_api_key(key, number)  # length and scopes; the message never shows a key
        return keys

    @field_validator("speech_audiosocket_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        for network in networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not a network such as 10.0.0.0/8") from None
        return networks

    @field_validator("speech_redact")
    @classmethod
    def _redaction_kinds(cls, kinds: list[str]) -> list[str]:
        try:
            return sorted(parse_kinds(kinds, field="value")) or ["none"]
        except RedactionKindError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("speech_audiohook_client_secret")
    @classmethod
    def _client_secret(cls, secret: str) -> str:
        if secret:
            try:
                base64.b64decode(secret, validate=True)
            except binascii.Error:
                raise ValueError("must be the integration's client secret, in base64") from None
        return secret

    @field_validator("vision_gallery_key")
    @classmethod
    def _aes_key(cls, key: str) -> str:
        if key:
            try:
                raw = base64.b64decode(key, validate=True)
            except binascii.Error:
                raw = b""
            if len(raw) != 32:
                raise ValueError("must be 32 random bytes in base64 (openssl rand -base64 32)")
        return key

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.keepalive_timeout_s >= self.keepalive_time_s:
            raise ValueError("keepalive_timeout_s must be shorter than keepalive_time_s")
        if self.leads_warm_threshold >= self.leads_hot_threshold:
            raise ValueError("leads_warm_threshold must be below leads_hot_threshold")
        leads_urls = [*self.leads_webhook_urls, *self.leads_follow_up_webhook_urls]
        if leads_urls and len(self.leads_webhook_secret) < 16:
            raise ValueError(
                "leads_webhook_secret of at least 16 characters is needed with webhooks"
            )
        if self.nlp_handoff_webhook_urls and len(self.nlp_handoff_webhook_secret) < 16:
            raise ValueError(
                "nlp_handoff_webhook_secret of at least 16 characters is needed with "
                "nlp_handoff_webhook_urls"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file (mutual TLS) needs tls_cert_file and tls_key_file")
        for name in ("tls_cert_file", "tls_key_file", "tls_client_ca_file", "tls_ca_file"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no file at {path}")
        kinds = {k.removeprefix("SIGNAL_KIND_").lower() for k in _signal_kinds()}
        unknown = sorted(set(self.leads_retention_by_kind) - kinds)
        if unknown:
            raise ValueError(
                f"leads_retention_by_kind: unknown signal kind {unknown[0]!r}; "
                f"kinds are {', '.join(sorted(kinds))}"
            )
        if any(days <= 0 for days in self.leads_retention_by_kind.values()):
            raise ValueError("leads_retention_by_kind: every limit must be more than 0 days")
        for name in ("leads_webhook_urls", "leads_follow_up_webhook_urls"):
            bad = [u for u in getattr(self, name) if not u.startswith(("https://", "http://"))]
            if bad:
                raise ValueError(f"{name} must be http(s) URLs, not {bad[0]!r}")
        return self

    @property
    def resolved_model_dir(self) -> Path:
        return self.model_dir or self.data_dir / "models"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'leads.db'}"

    def port_for(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    def metrics_port_for(self, service: str) -> int:
        return int(getattr(self, f"{service}_metrics_port"))

    def health_port_for(self, service: str) -> int:
        return int(getattr(self, f"{service}_health_port"))


_SECRET_FIELDS = {"api_keys", "leads_webhook_secret", "vision_gallery_key"}


def _signal_kinds() -> list[str]:
    from percept.v1 import common_pb2

    names = common_pb2.SignalKind.DESCRIPTOR.values_by_name
    return [name for name in names if name != "SIGNAL_KIND_UNSPECIFIED"]


class SettingsError(Exception):
    """Settings failed validation; the message names each bad variable."""


def load_settings(**overrides: object) -> Settings:
    """Reads settings from the environment, turning validation errors into one clear message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            var = f"PERCEPT_{field.upper()}" if err["loc"] else "settings"
            # A check across fields sees every value, secrets included: show no input then.
            secret = field in _SECRET_FIELDS or not err["loc"]
            shown = "" if secret else f" (got {err.get('input')!r})"
            lines.append(f"{var}: {err['msg']}{shown}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from exc
