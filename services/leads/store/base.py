"""The leads store: idempotent ingest, identity resolution, derived lead state, queries.

Synchronous SQLAlchemy Core; the servicer calls it from worker threads. Writes
are serialised by one lock inside a process. Several processes (leads replicas)
share PostgreSQL: there a write to keys or leads first takes one transaction-level
advisory lock, so those writes run one at a time across replicas (group commit
keeps each one large), and each sees everything committed before it. SERIALIZABLE
with retries was measured first: its page-level conflicts reran most batches (see
bench/leads_ingest.py). SQLite is the single-process embedded default: it has one
writer and needs none of this.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from percept.leads import schema
from percept.leads.changes import Change, payloads
from percept.leads.identity import IdentityKey
from percept.leads.scoring import (
    Assessment,
    LinearModel,
    ScoringPolicy,
)

log = logging.getLogger("percept.leads.store")


MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
CHUNK = 1000  # values per IN (...): one query per 500-signal batch; SQLite allows 32,766
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 50, 500
# PostgreSQL: serialization failure, deadlock, a unique key another replica inserted first.
CONFLICTS = frozenset({"40001", "40P01", "23505"})
WRITE_ATTEMPTS = 12
NOTIFY_CHANNEL = "percept_leads"  # listen.CHANNEL
CLAIM_LEASE_S = 120.0  # a claimed webhook or face erasure is another replica's after this
PURGE_LOCK = 0x7065_7263_6C65_6164  # "percleAd": one replica purges at a time
MIGRATE_LOCK = 0x7065_7263_6D69_6772  # "percmigr": one replica migrates at a time
WRITE_LOCK = 0x7065_7263_7772_6974  # "percwrit": writes to keys and leads, one at a time
T = TypeVar("T")


def utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; everything we store is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def now_utc() -> datetime:
    return datetime.now(UTC)


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (signal_id, message)

    @property
    def rejected(self) -> int:
        return len(self.errors)


@dataclass
class GroupResult:
    """Several callers' batches written in one transaction: a result for each, and every
    lead change once."""

    results: list[IngestResult]
    changes: list[Change] = field(default_factory=list)


@dataclass(frozen=True)
class LeadView:
    row: dict[str, Any]
    keys: list[IdentityKey]
    assessment: Assessment  # computed at read time, decayed to now
    timeline: list[dict[str, Any]]  # signals and follow-up steps, oldest first
    follow_up: dict[str, Any] | None = None  # the open follow-up (follow_ups row), if any


@dataclass(frozen=True)
class LeadFilter:
    classes: tuple[int, ...] = ()
    stages: tuple[int, ...] = ()
    product_interest: str = ""
    min_score: float = 0.0
    max_score: float = 0.0  # 0: no upper bound
    updated_since: datetime | None = None
    segment: str = ""  # segment_id

    def fingerprint(self) -> str:
        since = self.updated_since.isoformat() if self.updated_since else ""
        parts = (
            self.classes,
            self.stages,
            self.product_interest,
            self.min_score,
            self.max_score,
            self.segment,
        )
        raw = "|".join(map(str, parts)) + f"|{since}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


class StoreVersionError(RuntimeError):
    """The database's schema is newer than this code: starting would corrupt it."""


class InvalidPageTokenError(ValueError):
    pass


class LeadNotFoundError(LookupError):
    pass


class LeadConflictError(ValueError):
    """The request contradicts the store's state (e.g. a merge already undone)."""


@dataclass(frozen=True)
class Erasure:
    audit_id: str
    leads: int
    signals: int
    identities: int
    face_identity_ids: list[str]
    changes: list[Change] = field(default_factory=list)  # FORGOTTEN for every erased lead id


class _Leads:
    """Union-find over the leads one ingest batch touches."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.created: dict[str, datetime] = {}

    def find(self, lead: str) -> str:
        root = lead
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while lead != root:
            self.parent[lead], lead = root, self.parent[lead]
        return root


class StoreBase:
    """The engine, the write transaction (retried on conflict between replicas),
    change notification, the schema, and resolving a merged lead id."""

    def __init__(
        self,
        url: str,
        policy: ScoringPolicy | None = None,
        clock: Callable[[], datetime] = now_utc,
        default_region: str | None = None,
        webhook_urls: Sequence[str] = (),
        max_people_per_key: int = 3,
        follow_up_webhook_urls: Sequence[str] = (),
    ) -> None:
        self.url = make_url(url)
        self.max_people_per_key = max_people_per_key
        self.webhook_urls = list(webhook_urls)  # told of class and stage changes
        self.follow_up_webhook_urls = list(follow_up_webhook_urls)  # of new and overdue ones
        self.policy = policy or ScoringPolicy()
        self.clock = clock
        self.default_region = default_region
        self.engine: Engine = self._create_engine()
        self.shared = self.url.get_backend_name() != "sqlite"  # other replicas may write
        self.conflicts = 0  # write transactions run again after a conflict (replicas)
        self._write_lock = threading.Lock()
        self._token_key = b""  # signs page tokens
        self._erasure_key = b""  # keys the hashes of erasure tombstones (tombstones.py)
        self._model: LinearModel | None = None
        self._model_checked = -math.inf

    def _create_engine(self) -> Engine:
        # Every signal and lead row carries JSON columns: orjson codes them ~5x faster.
        codec = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
        if self.url.get_backend_name() != "sqlite":
            return create_engine(self.url, pool_pre_ping=True, **codec)
        if self.url.database and self.url.database != ":memory:":
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(self.url, connect_args={"check_same_thread": False}, **codec)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit (and so an ack) survives power loss, not only a crash.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()

        return engine

    def _write(self, work: Callable[[Connection], T], *, serial: bool = True) -> T:
        """`work` in one write transaction. On PostgreSQL, replicas write at once: a
        `serial` write (anything touching keys or leads) first takes one transaction-level
        advisory lock, so such writes run one at a time across every replica, each seeing
        all the others committed (READ COMMITTED reads after the lock). One that still
        fails on a conflict (a deadlock, a key inserted first) runs again from the start."""
        for attempt in itertools.count(1):
            try:
                with self._write_lock, self.engine.connect() as conn, conn.begin():
                    if self.shared and serial:
                        conn.execute(select(func.pg_advisory_xact_lock(WRITE_LOCK)))
                    return work(conn)
            except DBAPIError as exc:
                state = getattr(exc.orig, "sqlstate", None)
                if not self.shared or state not in CONFLICTS or attempt >= WRITE_ATTEMPTS:
                    raise
                self.conflicts += 1
                time.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, 8)))
        raise AssertionError("unreachable")

    @property
    def listen_dsn(self) -> str:
        """The database as libpq takes it (the LISTEN connection is plain psycopg)."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def _notify(self, conn: Connection, changes: Sequence[Change]) -> None:
        """Every replica's listener hears these changes when (and if) this commits."""
        if not self.shared:
            return
        for payload in payloads(changes):
            conn.execute(select(func.pg_notify(NOTIFY_CHANNEL, payload)))

    def migrate(self) -> None:
        """Brings the schema to the newest Alembic revision and loads the store's secret."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        scripts = ScriptDirectory.from_config(config)
        with self.engine.begin() as conn:
            if self.shared:  # replicas starting together migrate one after the other
                conn.execute(select(func.pg_advisory_xact_lock(MIGRATE_LOCK)))
            current = MigrationContext.configure(conn).get_current_revision()
            if current is not None and current not in {
                s.revision for s in scripts.walk_revisions()
            }:
                raise StoreVersionError(
                    f"the leads database is at schema revision {current!r}, newer than this "
                    f"leads service knows (its newest is {scripts.get_current_head()!r}): run "
                    "the release that migrated it, or restore the database"
                )
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            # Still under the lock: replicas starting together on a fresh database make
            # the secrets once (one of them inserts; the others read what it made).
            self._token_key = _secret(conn, "page_token_key")
            self._erasure_key = _secret(conn, "erasure_key")

    def close(self) -> None:
        self.engine.dispose()

    def _resolve(self, conn: Connection, lead_id: str) -> str:
        """The surviving lead a (possibly merged) lead id now belongs to."""
        c = schema.leads.c
        for _ in range(64):  # merge chains are flattened; this only guards against cycles
            target = conn.execute(select(c.merged_into).where(c.lead_id == lead_id)).first()
            if target is None:
                raise LeadNotFoundError(f"lead {lead_id!r} not found")
            if target.merged_into is None:
                return lead_id
            lead_id = target.merged_into
        raise LeadConflictError(f"lead {lead_id!r} is in a merge cycle")


def _secret(conn: Connection, name: str) -> bytes:
    """The store's secret `name` (32 random bytes), made if absent: inserted unless a row
    is there (also if another process inserts it meanwhile), then read."""
    table = schema.settings_table
    row = {"name": name, "value": secrets.token_hex(32)}
    if conn.dialect.name == "postgresql":
        conn.execute(postgresql.insert(table).values(row).on_conflict_do_nothing())
    elif conn.dialect.name == "sqlite":
        conn.execute(sqlite.insert(table).values(row).on_conflict_do_nothing())
    elif conn.scalar(select(table.c.value).where(table.c.name == name)) is None:
        conn.execute(insert(table).values(row))
    stored = conn.execute(select(table.c.value).where(table.c.name == name)).scalar_one()
    return bytes.fromhex(stored)


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
