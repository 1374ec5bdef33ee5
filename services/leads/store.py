"""The leads store: idempotent ingest, identity resolution, derived lead state, queries.

Synchronous SQLAlchemy Core; the servicer calls it from worker threads. Writes
are serialised by one lock inside a process. Several processes (leads replicas)
share PostgreSQL: there every write transaction is SERIALIZABLE, and one that
conflicts with another replica's (a key both saw as new, a lead both updated) is
run again from the start, so the outcome is that of some order of the two. SQLite
is the single-process embedded default: it has one writer and needs none of this.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import logging
import math
import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
    and_,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

from percept.leads import schema
from percept.leads.bulk import BulkWrite
from percept.leads.changes import Change, payloads
from percept.leads.identity import EXCLUSIVE, STRENGTH, IdentityKey
from percept.leads.scoring import (
    Assessment,
    Features,
    LinearModel,
    ScoringPolicy,
    SignalFacts,
    assess_features,
    class_name,
    stage_name,
)
from percept.leads.validation import InvalidSignalError, ValidSignal, validate
from percept.v1 import common_pb2, leads_pb2

log = logging.getLogger("percept.leads.store")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
CHUNK = 1000  # values per IN (...): one query per 500-signal batch; SQLite allows 32,766
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 50, 500
# PostgreSQL: serialization failure, deadlock, a unique key another replica inserted first.
CONFLICTS = frozenset({"40001", "40P01", "23505"})
WRITE_ATTEMPTS = 12
NOTIFY_CHANNEL = "percept_leads"  # listen.CHANNEL
CLAIM_LEASE_S = 120.0  # a claimed webhook or face erasure is another replica's after this
PURGE_LOCK = 0x7065_7263_6C65_6164  # "percleAd": one replica purges at a time
MIGRATE_LOCK = 0x7065_7263_6D69_6772  # "percmigr": one replica migrates at a time
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
    timeline: list[dict[str, Any]]


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


class LeadStore:
    def __init__(
        self,
        url: str,
        policy: ScoringPolicy | None = None,
        clock: Callable[[], datetime] = now_utc,
        default_region: str | None = None,
        webhook_urls: Sequence[str] = (),
        max_people_per_key: int = 3,
    ) -> None:
        self.url = make_url(url)
        self.max_people_per_key = max_people_per_key
        self.webhook_urls = list(webhook_urls)
        self.policy = policy or ScoringPolicy()
        self.clock = clock
        self.default_region = default_region
        self.engine: Engine = self._create_engine()
        self.shared = self.url.get_backend_name() != "sqlite"  # other replicas may write
        self.conflicts = 0  # write transactions run again after a conflict (replicas)
        self._write_lock = threading.Lock()
        self._token_key = b""
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

    def _write(self, work: Callable[[Connection], T]) -> T:
        """`work` in one write transaction; on PostgreSQL SERIALIZABLE, and run again from
        the start (after a short random wait) when it conflicts with another replica's."""
        for attempt in itertools.count(1):
            try:
                with self._write_lock, self.engine.connect() as conn:
                    if self.shared:
                        conn.execution_options(isolation_level="SERIALIZABLE")
                    with conn.begin():
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

    # -- schema ---------------------------------------------------------------

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
        with self.engine.begin() as conn:
            secret = conn.scalar(
                select(schema.settings_table.c.value).where(
                    schema.settings_table.c.name == "page_token_key"
                )
            )
            if secret is None:
                secret = secrets.token_hex(32)
                conn.execute(
                    insert(schema.settings_table).values(name="page_token_key", value=secret)
                )
        self._token_key = bytes.fromhex(secret)

    def close(self) -> None:
        self.engine.dispose()

    # -- trained models -------------------------------------------------------

    MODEL_CHECK_S = 30.0  # how stale the active model may be in a running server

    def active_model(self) -> LinearModel | None:
        """The active trained model (re-read at most every MODEL_CHECK_S), or None: the prior."""
        if time.monotonic() - self._model_checked < self.MODEL_CHECK_S:
            return self._model
        m = schema.scoring_models.c
        with self.engine.connect() as conn:
            row = conn.execute(select(m.model).where(m.active.is_(True))).first()
        self._model = LinearModel(**row.model) if row else None
        self._model_checked = time.monotonic()
        return self._model

    def save_model(self, model: LinearModel, metrics: dict[str, Any], *, activate: bool) -> None:
        def work(conn: Connection) -> None:
            if activate:
                conn.execute(update(schema.scoring_models).values(active=False))
            conn.execute(
                insert(schema.scoring_models).values(
                    version=model.version,
                    created_at=self.clock(),
                    active=activate,
                    model={
                        "version": model.version,
                        "intercept": model.intercept,
                        "weights": model.weights,
                    },
                    metrics=metrics,
                )
            )

        self._write(work)
        self._model_checked = -math.inf  # picked up at once in this process

    # -- ingest ---------------------------------------------------------------

    def ingest(self, messages: Sequence[common_pb2.Signal]) -> IngestResult:
        """Stores new signals, skips exact replays, rejects bad or conflicting ones; one commit."""
        return self.ingest_together([messages]).results[0]

    def ingest_together(self, batches: Sequence[Sequence[common_pb2.Signal]]) -> GroupResult:
        """`ingest` for several batches in one transaction (one fsync, one write per lead);
        each batch gets its own counts and errors. A signal id sent twice is stored once and
        counted as a duplicate where it came second."""
        now = self.clock()
        group = GroupResult([IngestResult() for _ in batches])
        valid: dict[str, ValidSignal] = {}
        came_in: dict[str, IngestResult] = {}  # signal id -> the result of its batch
        for messages, result in zip(batches, group.results, strict=True):
            for message in messages:
                try:
                    signal = validate(message, now=now, default_region=self.default_region)
                except InvalidSignalError as exc:
                    result.errors.append((message.signal_id, str(exc)))
                    continue
                earlier = valid.get(signal.signal_id)
                if earlier is None:
                    valid[signal.signal_id] = signal
                    came_in[signal.signal_id] = result
                elif earlier.content_hash == signal.content_hash:
                    result.duplicates += 1
                else:
                    result.errors.append((signal.signal_id, _conflict(signal.signal_id)))
        if not valid:
            return group

        def work(conn: Connection) -> tuple[list[ValidSignal], list[str], list[Change]]:
            fresh, replayed = self._drop_known(conn, list(valid.values()))
            changes = self._store(conn, fresh, now) if fresh else []
            self._notify(conn, changes)
            return fresh, replayed, changes

        fresh, replayed, group.changes = self._write(work)  # counted once it committed
        for s in fresh:
            came_in[s.signal_id].accepted += 1
        for mark in replayed:
            signal_id = mark[1:]
            if mark[0] == "=":
                came_in[signal_id].duplicates += 1
                continue
            log.warning(
                "conflicting replay rejected; original kept", extra={"signal_id": signal_id}
            )
            came_in[signal_id].errors.append((signal_id, _conflict(signal_id)))
        return group

    def _drop_known(
        self, conn: Connection, signals: list[ValidSignal]
    ) -> tuple[list[ValidSignal], list[str]]:
        """The signals not stored yet, and the ids of those that were ("=id" when stored
        with the same content, "!id" when with other content)."""
        known: dict[str, str] = {}
        sig = schema.signals.c
        for chunk in _chunks([s.signal_id for s in signals]):
            rows = conn.execute(
                select(sig.signal_id, sig.content_hash).where(sig.signal_id.in_(chunk))
            ).all()
            known.update({r.signal_id: r.content_hash for r in rows})
        fresh, replayed = [], []
        for s in signals:
            stored = known.get(s.signal_id)
            if stored is None:
                fresh.append(s)
            else:
                replayed.append(("=" if stored == s.content_hash else "!") + s.signal_id)
        return fresh, replayed

    def _store(self, conn: Connection, signals: list[ValidSignal], now: datetime) -> list[Change]:
        """Writes fresh signals, their keys and new leads, merges, and the leads' new state."""
        ident, lead_c = schema.identities.c, schema.leads.c
        by_type: dict[str, set[str]] = {}
        for s in signals:
            for k in s.keys:
                by_type.setdefault(k.key_type, set()).add(k.value)
        owner: dict[IdentityKey, str] = {}
        shared: set[IdentityKey] = set()  # seen with too many people: links nobody
        people: dict[IdentityKey, int] = {}
        leads = _Leads()
        # One query per key type: `key_type = ? AND key_value IN (...)` walks the primary key,
        # and the join brings each owner's creation time (the oldest lead survives a merge).
        query = select(
            ident.key_value, ident.lead_id, ident.people, ident.shared, lead_c.created_at
        ).join(schema.leads, lead_c.lead_id == ident.lead_id)
        for key_type, values in sorted(by_type.items()):
            for chunk in _chunks(sorted(values)):
                rows = conn.execute(
                    query.where(ident.key_type == key_type, ident.key_value.in_(chunk))
                ).all()  # fetchall: row-by-row fetching cost as much as the query
                for r in rows:
                    key = IdentityKey(key_type, r.key_value)
                    people[key] = r.people
                    if r.shared:
                        shared.add(key)
                        continue
                    owner[key] = r.lead_id
                    leads.created[r.lead_id] = utc(r.created_at)
        exclusive = self._exclusive_keys(conn, sorted(set(owner.values())))

        new_leads: list[str] = []
        new_keys: list[dict[str, Any]] = []
        merges: list[tuple[str, str, str]] = []  # (survivor, absorbed, evidence signal id)
        suggested: list[tuple[str, str, IdentityKey, str]] = []  # (lead, lead, key, signal)
        refused: dict[IdentityKey, int] = {}  # people a key was refused as linking, now
        signal_rows: list[dict[str, Any]] = []
        ordered = sorted(signals, key=lambda s: s.occurred_at)  # signal_rows follow this order
        for s in ordered:
            group, blocked = _who(s, owner, leads, exclusive)
            if not group:
                lead = uuid.uuid4().hex
                leads.created[lead] = min(s.occurred_at, now)
                new_leads.append(lead)
            else:
                lead = group[0]  # the oldest lead survives a merge
                for absorbed in group[1:]:
                    leads.parent[absorbed] = lead
                    merges.append((lead, absorbed, s.signal_id))
                    for key_type, values in exclusive.pop(absorbed, {}).items():
                        exclusive.setdefault(lead, {}).setdefault(key_type, set()).update(values)
            for other, key in blocked:
                suggested.append((other, lead, key, s.signal_id))
                refused[key] = refused.get(key, 0) + 1
                if people.get(key, 1) + refused[key] > self.max_people_per_key:
                    shared.add(key)  # a switchboard: it links nobody from now on
                    owner.pop(key, None)
            for key in s.keys:
                if key not in owner and key not in shared and key not in people:
                    owner[key] = lead
                    people[key] = 1
                    new_keys.append(
                        {
                            "key_type": key.key_type,
                            "key_value": key.value,
                            "lead_id": lead,
                            "origin_lead_id": lead,
                            "first_seen_at": s.occurred_at,
                        }
                    )
                    if key.key_type in EXCLUSIVE:
                        held = exclusive.setdefault(lead, {})
                        held.setdefault(key.key_type, set()).add(key.value)
            signal_rows.append(_signal_row(s, lead, now))

        if new_leads:
            _INSERT_LEADS(
                conn,
                [
                    {
                        "lead_id": lead,
                        "created_at": leads.created[lead],
                        "updated_at": now,
                        "last_signal_at": leads.created[lead],
                        "score": 0.0,
                        "lead_class": leads_pb2.LEAD_CLASS_COLD,
                        "stage": leads_pb2.LEAD_STAGE_NEW,
                        "product_interest": "",
                        "signal_count": 0,
                        "qualification": {},
                        "channels": [],
                    }
                    for lead in new_leads
                ],
            )
        for row in new_keys:
            row["lead_id"] = leads.find(row["lead_id"])
        for row in signal_rows:
            row["lead_id"] = leads.find(row["lead_id"])
        _INSERT_IDENTITIES(conn, new_keys)
        _INSERT_SIGNALS(conn, signal_rows)
        for survivor, absorbed, evidence in merges:
            self._merge(conn, leads.find(survivor), absorbed, now, evidence=evidence)
        self._count_people(conn, refused, shared)
        self._suggest(conn, suggested, leads.find, now)
        touched = sorted({row["lead_id"] for row in signal_rows})
        before = self._update_incrementally(
            conn,
            touched,
            [a for _, a, _ in merges],
            leads.find,
            set(new_leads),
            ordered,
            signal_rows,
            now,
        )
        merged_into = {leads.find(s) for s, _, _ in merges}
        fresh = set(new_leads)
        changes = []
        for lead in touched:
            kind = (
                leads_pb2.LeadChange.CHANGE_TYPE_CREATED
                if lead in fresh
                else leads_pb2.LeadChange.CHANGE_TYPE_MERGED
                if lead in merged_into
                else leads_pb2.LeadChange.CHANGE_TYPE_UPDATED
            )
            previous = before.get(lead, (0, 0)) if lead not in fresh else (0, 0)
            changes.append(Change(lead, kind, *previous))
        return changes

    def _exclusive_keys(
        self, conn: Connection, lead_ids: Sequence[str]
    ) -> dict[str, dict[str, set[str]]]:
        """The e-mails and CRM ids each lead holds (a person has one of each)."""
        ident = schema.identities.c
        held: dict[str, dict[str, set[str]]] = {}
        for chunk in _chunks(list(lead_ids)):
            rows = conn.execute(
                select(ident.lead_id, ident.key_type, ident.key_value).where(
                    ident.lead_id.in_(chunk), ident.key_type.in_(EXCLUSIVE)
                )
            )
            for r in rows:
                held.setdefault(r.lead_id, {}).setdefault(r.key_type, set()).add(r.key_value)
        return held

    def _count_people(
        self, conn: Connection, refused: dict[IdentityKey, int], shared: set[IdentityKey]
    ) -> None:
        """Keys refused as links count the people they were seen with; past the limit
        they are shared (kept on their lead, linking nobody)."""
        ident = schema.identities.c
        for key, count in refused.items():
            conn.execute(
                update(schema.identities)
                .where(ident.key_type == key.key_type, ident.key_value == key.value)
                .values(people=ident.people + count, shared=key in shared)
            )

    def _suggest(
        self,
        conn: Connection,
        suggested: Sequence[tuple[str, str, IdentityKey, str]],
        find: Callable[[str], str],
        now: datetime,
    ) -> None:
        """A merge suggestion per pair of leads a weak shared key would have joined (once
        per pair while undecided)."""
        m = schema.merge_suggestions.c
        fresh: dict[frozenset[str], dict[str, Any]] = {}
        for a, b, key, signal_id in suggested:
            pair = frozenset((find(a), find(b)))
            if len(pair) == 2 and pair not in fresh:
                first, second = sorted(pair)
                fresh[pair] = {
                    "suggestion_id": uuid.uuid4().hex,
                    "lead_a": first,
                    "lead_b": second,
                    "key_type": key.key_type,
                    "key_value": key.value,
                    "evidence_signal_id": signal_id,
                    "reason": f"both have the {key.key_type} {key.value}, but each "
                    "has a different e-mail or CRM id",
                    "created_at": now,
                }
        if not fresh:
            return
        involved = sorted({lead for pair in fresh for lead in pair})
        for chunk in _chunks(involved):
            for r in conn.execute(
                select(m.lead_a, m.lead_b).where(m.decided_at.is_(None), m.lead_a.in_(chunk))
            ):
                fresh.pop(frozenset((r.lead_a, r.lead_b)), None)
        if fresh:
            conn.execute(insert(schema.merge_suggestions), list(fresh.values()))

    def _merge(
        self,
        conn: Connection,
        survivor: str,
        absorbed: str,
        now: datetime,
        *,
        evidence: str | None = None,
        reason: str = "identity keys seen together",
    ) -> None:
        for table in (schema.identities, schema.signals):
            conn.execute(update(table).where(table.c.lead_id == absorbed).values(lead_id=survivor))
        leads = schema.leads.c
        conn.execute(
            update(schema.leads)
            .where(or_(leads.lead_id == absorbed, leads.merged_into == absorbed))
            .values(merged_into=survivor, updated_at=now)
        )
        conn.execute(
            insert(schema.merges).values(
                merge_id=uuid.uuid4().hex,
                survivor_id=survivor,
                absorbed_id=absorbed,
                reason=reason,
                evidence_signal_id=evidence,
                created_at=now,
            )
        )

    def _update_incrementally(
        self,
        conn: Connection,
        roots: Sequence[str],
        absorbed: Sequence[str],
        find: Callable[[str], str],
        new_leads: set[str],
        signals: Sequence[ValidSignal],
        signal_rows: Sequence[dict[str, Any]],
        now: datetime,
    ) -> dict[str, tuple[int, int]]:
        """Folds a batch into the stored aggregates: O(batch), not O(lead history)."""
        before: dict[str, tuple[int, int]] = {}
        stored = self._stored_features(conn, [*roots, *absorbed], before)
        features: dict[str, Features] = {}
        stale: set[str] = set()
        for lead in [*roots, *absorbed]:
            found = stored.get(lead)
            if found is None and lead not in new_leads:
                stale.add(find(lead))
            features[lead] = found or Features(self.policy.half_life.total_seconds())
        for lead in absorbed:
            if find(lead) not in stale:
                features[find(lead)].merge(features[lead])
        for signal, row in zip(signals, signal_rows, strict=True):
            if row["lead_id"] not in stale:
                features[row["lead_id"]].add(_facts_of(signal))
        states = {r: features[r] for r in roots if r not in stale}
        known = {r: before[r] for r in states if r in before}
        before = self._write_states(conn, states, now, known)
        if stale:
            before |= self._refresh(conn, sorted(stale), now)
        return before

    def _stored_features(
        self,
        conn: Connection,
        lead_ids: Sequence[str],
        before: dict[str, tuple[int, int]] | None = None,
    ) -> dict[str, Features]:
        """Stored aggregates that are still valid for the current half-life; `before`, when
        given, gets each lead's (class, stage) from the same read."""
        c = schema.leads.c
        found: dict[str, Features] = {}
        half_life = self.policy.half_life.total_seconds()
        query = select(c.lead_id, c.features, c.lead_class, c.stage)
        for chunk in _chunks(sorted(set(lead_ids))):
            for lead_id, features, lead_class, stage in conn.execute(
                query.where(c.lead_id.in_(chunk))
            ).all():
                if before is not None:
                    before[lead_id] = (lead_class, stage)
                if features and features.get("half_life_s") == half_life:
                    found[lead_id] = Features.from_json(features)
        return found

    def _refresh(
        self, conn: Connection, lead_ids: Sequence[str], now: datetime
    ) -> dict[str, tuple[int, int]]:
        """Recomputes leads from all their signals (splits, merges by hand, old rows)."""
        facts = self._facts(conn, lead_ids)
        return self._write_states(
            conn,
            {
                lead: Features.of(facts[lead], self.policy.half_life)
                for lead in lead_ids
                if lead in facts
            },
            now,
        )

    def _write_states(
        self,
        conn: Connection,
        states: dict[str, Features],
        now: datetime,
        before: dict[str, tuple[int, int]] | None = None,
    ) -> dict[str, tuple[int, int]]:
        """Stores aggregates and what they imply; returns each lead's (class, stage) before
        (read here unless the caller read them already)."""
        c = schema.leads.c
        if before is None:
            before = {}
            for chunk in _chunks(sorted(states)):
                rows = conn.execute(
                    select(c.lead_id, c.lead_class, c.stage).where(c.lead_id.in_(chunk))
                ).all()
                before.update({r.lead_id: (r.lead_class, r.stage) for r in rows})
        updates: list[dict[str, Any]] = []
        model = self.active_model()
        for lead, features in states.items():
            a = assess_features(features, now, self.policy, explain=False, model=model)
            updates.append(
                {
                    "target": lead,
                    "score": a.score,
                    "lead_class": a.lead_class,
                    "stage": a.stage,
                    "product_interest": a.product_interest,
                    "qualification": a.qualification,
                    "channels": a.channels,
                    "signal_count": features.signal_count,
                    "updated_at": now,
                    "last_signal_at": datetime.fromtimestamp(features.last_signal_at, UTC),
                    "features": features.to_json(),
                }
            )
        if updates:
            _REFRESH(conn, updates)  # one executemany for the whole batch
            self._queue_webhooks(conn, updates, before, now)
        return before

    def _queue_webhooks(
        self,
        conn: Connection,
        updates: Sequence[dict[str, Any]],
        before: dict[str, tuple[int, int]],
        now: datetime,
    ) -> None:
        """One event per URL for each lead whose class or stage changed (same transaction)."""
        if not self.webhook_urls:
            return
        events = []
        for u in updates:
            old_class, old_stage = before.get(u["target"], (0, 0))
            if (old_class, old_stage) == (u["lead_class"], u["stage"]):
                continue
            payload = {
                "type": "lead.changed",
                "lead_id": u["target"],
                "class": class_name(u["lead_class"]),
                "previous_class": class_name(old_class),
                "stage": stage_name(u["stage"]),
                "previous_stage": stage_name(old_stage),
                "score": round(u["score"], 4),
                "product_interest": u["product_interest"],
                "changed_at": now.isoformat(),
            }
            for url in self.webhook_urls:
                event_id = uuid.uuid4().hex
                events.append(
                    {
                        "event_id": event_id,
                        "created_at": now,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "delivered_at": None,
                        "failed": False,
                        "last_error": None,
                        "payload": {**payload, "event_id": event_id, "url": url},
                    }
                )
        if events:
            conn.execute(insert(schema.webhook_events), events)

    def _queue_face_erasures(self, conn: Connection, faces: Sequence[str], now: datetime) -> None:
        """In the erasure's own transaction: no erased lead leaves a face behind unrecorded."""
        f = schema.face_erasures.c
        queued = set(conn.scalars(select(f.face_identity_id).where(f.face_identity_id.in_(faces))))
        rows = [
            {"face_identity_id": face, "requested_at": now, "attempts": 0, "next_attempt_at": now}
            for face in sorted(set(faces) - queued)
        ]
        if rows:
            conn.execute(insert(schema.face_erasures), rows)

    def due_face_erasures(
        self, now: datetime, limit: int, lease_s: float = CLAIM_LEASE_S
    ) -> list[tuple[str, int]]:
        """Claims due erasures for `lease_s` (see `due_webhooks`)."""
        f = schema.face_erasures.c
        query = (
            select(f.face_identity_id, f.attempts)
            .where(f.next_attempt_at <= now)
            .order_by(f.next_attempt_at, f.face_identity_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )

        def work(conn: Connection) -> list[tuple[str, int]]:
            rows = [(r.face_identity_id, r.attempts) for r in conn.execute(query)]
            if rows:
                conn.execute(
                    update(schema.face_erasures)
                    .where(f.face_identity_id.in_([face for face, _ in rows]))
                    .values(next_attempt_at=now + timedelta(seconds=lease_s))
                )
            return rows

        return self._write(work)

    def face_erasure_attempted(
        self, face_identity_id: str, *, done: bool, retry_at: datetime, error: str | None
    ) -> None:
        """Done: the row goes (vision holds nothing more). Else retried at `retry_at`."""
        f = schema.face_erasures.c
        row = schema.face_erasures.c.face_identity_id == face_identity_id
        with self.engine.begin() as conn:
            if done:
                conn.execute(schema.face_erasures.delete().where(row))
            else:
                conn.execute(
                    update(schema.face_erasures)
                    .where(row)
                    .values(attempts=f.attempts + 1, next_attempt_at=retry_at, last_error=error)
                )

    def pending_face_erasures(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(schema.face_erasures)) or 0)

    def due_webhooks(
        self, now: datetime, limit: int, lease_s: float = CLAIM_LEASE_S
    ) -> list[dict[str, Any]]:
        """Claims due events: this replica's to deliver for `lease_s`. Replicas skip rows
        another is claiming (FOR UPDATE SKIP LOCKED) and claimed rows are due again only
        when the lease ends, so each event goes out once; one whose replica died in
        the middle is delivered by another after the lease."""
        w = schema.webhook_events.c
        query = (
            select(w.event_id, w.payload, w.attempts)
            .where(w.delivered_at.is_(None), w.failed.is_(False), w.next_attempt_at <= now)
            .order_by(w.next_attempt_at, w.event_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )

        def work(conn: Connection) -> list[dict[str, Any]]:
            rows = [dict(r) for r in conn.execute(query).mappings()]
            if rows:
                conn.execute(
                    update(schema.webhook_events)
                    .where(w.event_id.in_([r["event_id"] for r in rows]))
                    .values(next_attempt_at=now + timedelta(seconds=lease_s))
                )
            return rows

        return self._write(work)

    def webhook_attempted(
        self,
        event_id: str,
        *,
        delivered: bool,
        now: datetime,
        retry_at: datetime | None,
        error: str | None,
    ) -> None:
        """Records an attempt: delivered, retried later, or (retry_at None) given up."""
        w = schema.webhook_events.c
        values: dict[str, Any] = {"attempts": w.attempts + 1, "last_error": error}
        if delivered:
            values["delivered_at"] = now
        elif retry_at is None:
            values["failed"] = True
        else:
            values["next_attempt_at"] = retry_at
        with self.engine.begin() as conn:
            conn.execute(
                update(schema.webhook_events).where(w.event_id == event_id).values(**values)
            )

    def _facts(self, conn: Connection, lead_ids: Sequence[str]) -> dict[str, list[SignalFacts]]:
        sig = schema.signals.c
        facts: dict[str, list[SignalFacts]] = {}
        for chunk in _chunks(list(lead_ids)):
            rows = conn.execute(
                select(
                    sig.lead_id,
                    sig.source,
                    sig.kind,
                    sig.name,
                    sig.value,
                    sig.numeric_value,
                    sig.confidence,
                    sig.occurred_at,
                    sig.identity,
                ).where(sig.lead_id.in_(chunk))
            )
            for r in rows:
                facts.setdefault(r.lead_id, []).append(
                    SignalFacts(
                        r.source,
                        r.kind,
                        r.name,
                        r.value,
                        r.numeric_value,
                        r.confidence,
                        utc(r.occurred_at),
                        tuple(r.identity),
                    )
                )
        return facts

    # -- lifecycle ------------------------------------------------------------

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

    def merge_leads(self, lead_ids: Sequence[str], reason: str) -> list[Change]:
        """Merges leads into the first one (a salesperson's decision), recorded and undoable."""
        now = self.clock()

        def work(conn: Connection) -> list[Change]:
            resolved = [self._resolve(conn, lead) for lead in lead_ids]
            if len(set(resolved)) != len(resolved):
                raise LeadConflictError("lead_ids: some of these leads are already the same lead")
            survivor, absorbed = resolved[0], resolved[1:]
            before = self._refresh(conn, [survivor], now)
            for other in absorbed:
                self._merge(conn, survivor, other, now, reason=f"manual: {reason}".strip())
            self._refresh(conn, [survivor], now)
            previous = before.get(survivor, (0, 0))
            changes = [Change(survivor, leads_pb2.LeadChange.CHANGE_TYPE_MERGED, *previous)]
            self._notify(conn, changes)
            return changes

        return self._write(work)

    # -- merge suggestions ----------------------------------------------------

    def merge_suggestions(
        self, lead_id: str, include_decided: bool, limit: int
    ) -> list[dict[str, Any]]:
        """Suggestions (newest first) with each lead as it survives now; a lead's only
        when `lead_id` is given. An open one whose leads were merged since is left out."""
        m, c = schema.merge_suggestions.c, schema.leads.c
        with self.engine.connect() as conn:
            query = select(schema.merge_suggestions).order_by(m.created_at.desc(), m.suggestion_id)
            if lead_id:
                current = self._resolve(conn, lead_id)
                ids = [current, *conn.scalars(select(c.lead_id).where(c.merged_into == current))]
                query = query.where(or_(m.lead_a.in_(ids), m.lead_b.in_(ids)))
            if not include_decided:
                query = query.where(m.decided_at.is_(None))
            rows = [dict(r) for r in conn.execute(query.limit(limit * 4)).mappings()]
            involved = sorted({r[k] for r in rows for k in ("lead_a", "lead_b")})
            survivor: dict[str, str] = {}
            for chunk in _chunks(involved):
                for r in conn.execute(select(c.lead_id, c.merged_into).where(c.lead_id.in_(chunk))):
                    survivor[r.lead_id] = r.merged_into or r.lead_id
        shown = []
        for row in rows:
            a, b = survivor.get(row["lead_a"]), survivor.get(row["lead_b"])
            if a is None or b is None or (a == b and row["decided_at"] is None):
                continue  # erased, or merged since
            shown.append({**row, "lead_ids": [a, b]})
        return shown[:limit]

    def _open_suggestion(self, conn: Connection, suggestion_id: str) -> dict[str, Any]:
        m = schema.merge_suggestions.c
        row = (
            conn.execute(select(schema.merge_suggestions).where(m.suggestion_id == suggestion_id))
            .mappings()
            .first()
        )
        if row is None:
            raise LeadNotFoundError(f"merge suggestion {suggestion_id!r} not found")
        if row["decided_at"] is not None:
            raise LeadConflictError(
                f"merge suggestion {suggestion_id!r} was already {row['decision']}"
            )
        return dict(row)

    def dismiss_suggestion(self, suggestion_id: str, reason: str) -> dict[str, Any]:
        now = self.clock()
        m = schema.merge_suggestions.c

        def work(conn: Connection) -> dict[str, Any]:
            row = self._open_suggestion(conn, suggestion_id)
            conn.execute(
                update(schema.merge_suggestions)
                .where(m.suggestion_id == suggestion_id)
                .values(decided_at=now, decision="dismissed")
            )
            return {
                **row,
                "decided_at": now,
                "decision": "dismissed",
                "reason": reason or row["reason"],
            }

        return self._write(work)

    def accept_suggestion(self, suggestion_id: str, reason: str) -> list[Change]:
        """Merges a suggestion's two leads (the older survives) and records the decision."""
        now = self.clock()
        m = schema.merge_suggestions.c

        def work(conn: Connection) -> list[Change]:
            row = self._open_suggestion(conn, suggestion_id)
            try:
                pair = [self._resolve(conn, row["lead_a"]), self._resolve(conn, row["lead_b"])]
            except LeadNotFoundError:
                raise LeadConflictError(
                    f"merge suggestion {suggestion_id!r}: one of its leads was erased"
                ) from None
            if pair[0] == pair[1]:
                raise LeadConflictError(
                    f"merge suggestion {suggestion_id!r}: its leads were merged already"
                )
            created = dict(
                conn.execute(
                    select(schema.leads.c.lead_id, schema.leads.c.created_at).where(
                        schema.leads.c.lead_id.in_(pair)
                    )
                ).all()
            )
            survivor, absorbed = sorted(pair, key=lambda lead: (utc(created[lead]), lead))
            before = self._refresh(conn, [survivor], now)
            why = f"suggestion {suggestion_id} accepted: {reason}".strip(": ")
            self._merge(
                conn, survivor, absorbed, now, evidence=row["evidence_signal_id"], reason=why
            )
            self._refresh(conn, [survivor], now)
            conn.execute(
                update(schema.merge_suggestions)
                .where(m.suggestion_id == suggestion_id)
                .values(decided_at=now, decision="accepted")
            )
            previous = before.get(survivor, (0, 0))
            changes = [Change(survivor, leads_pb2.LeadChange.CHANGE_TYPE_MERGED, *previous)]
            self._notify(conn, changes)
            return changes

        return self._write(work)

    def split_lead(self, lead_id: str, merge_id: str) -> list[Change]:
        """Undoes a recorded merge: the absorbed lead gets back its keys and signals."""
        now = self.clock()
        m = schema.merges.c

        def work(conn: Connection) -> list[Change]:
            current = self._resolve(conn, lead_id)
            merge = (
                conn.execute(select(schema.merges).where(m.merge_id == merge_id)).mappings().first()
            )
            if merge is None:
                raise LeadNotFoundError(f"merge {merge_id!r} not found")
            if merge["undone_at"] is not None:
                raise LeadConflictError(f"merge {merge_id!r} was already undone")
            if self._resolve(conn, merge["survivor_id"]) != current:
                raise LeadConflictError(f"merge {merge_id!r} does not belong to lead {lead_id!r}")
            absorbed = merge["absorbed_id"]
            # The absorbed lead comes back with everything merged into it before.
            closure, frontier = {absorbed}, [absorbed]
            while frontier:
                rows = conn.execute(
                    select(m.absorbed_id).where(
                        m.survivor_id.in_(frontier), m.undone_at.is_(None), m.merge_id != merge_id
                    )
                )
                frontier = [r.absorbed_id for r in rows if r.absorbed_id not in closure]
                closure.update(frontier)
            for table in (schema.identities, schema.signals):
                conn.execute(
                    update(table)
                    .where(table.c.lead_id == current, table.c.origin_lead_id.in_(closure))
                    .values(lead_id=absorbed)
                )
            leads = schema.leads.c
            conn.execute(
                update(schema.leads).where(leads.lead_id == absorbed).values(merged_into=None)
            )
            conn.execute(
                update(schema.leads)
                .where(leads.lead_id.in_(closure - {absorbed}))
                .values(merged_into=absorbed)
            )
            conn.execute(update(schema.merges).where(m.merge_id == merge_id).values(undone_at=now))
            before = self._refresh(conn, [current, absorbed], now)
            split = leads_pb2.LeadChange.CHANGE_TYPE_SPLIT
            changes = [Change(x, split, *before.get(x, (0, 0))) for x in (current, absorbed)]
            self._notify(conn, changes)
            return changes

        return self._write(work)

    def forget(self, lead_id: str, reason: str) -> Erasure:
        """Erases a lead, every lead merged into it, their keys, signals and merges."""
        now = self.clock()
        leads, ident, sig, m = (
            schema.leads.c,
            schema.identities.c,
            schema.signals.c,
            schema.merges.c,
        )

        def work(conn: Connection) -> Erasure:
            current = self._resolve(conn, lead_id)
            ids = [
                current,
                *conn.scalars(select(leads.lead_id).where(leads.merged_into == current)),
            ]
            faces = list(
                conn.scalars(
                    select(ident.key_value).where(
                        ident.lead_id.in_(ids), ident.key_type == "face_identity_id"
                    )
                )
            )
            signals = conn.execute(schema.signals.delete().where(sig.lead_id.in_(ids))).rowcount
            keys = conn.execute(schema.identities.delete().where(ident.lead_id.in_(ids))).rowcount
            conn.execute(
                schema.merges.delete().where(or_(m.survivor_id.in_(ids), m.absorbed_id.in_(ids)))
            )
            suggestions = schema.merge_suggestions.c
            conn.execute(
                schema.merge_suggestions.delete().where(
                    or_(suggestions.lead_a.in_(ids), suggestions.lead_b.in_(ids))
                )
            )
            conn.execute(
                update(schema.leads).where(leads.lead_id.in_(ids)).values(merged_into=None)
            )
            erased = conn.execute(schema.leads.delete().where(leads.lead_id.in_(ids))).rowcount
            self._queue_face_erasures(conn, faces, now)
            audit_id = uuid.uuid4().hex
            conn.execute(
                insert(schema.erasures).values(
                    audit_id=audit_id,
                    erased_at=now,
                    reason=reason,
                    leads_erased=erased,
                    signals_erased=signals,
                    identities_erased=keys,
                )
            )
            forgotten = leads_pb2.LeadChange.CHANGE_TYPE_FORGOTTEN
            self._notify(conn, [Change(lead_id.strip(), forgotten)])
            return Erasure(audit_id, erased, signals, keys, faces)

        return self._write(work)

    # -- analytics ------------------------------------------------------------

    def active_features(self) -> tuple[list[str], list[Features]]:
        """Every lead that was not merged away, with its aggregates."""
        c = schema.leads.c
        with self.engine.connect() as conn:
            ids = list(
                conn.scalars(select(c.lead_id).where(c.merged_into.is_(None)).order_by(c.lead_id))
            )
            stored = self._stored_features(conn, ids)
            missing = [i for i in ids if i not in stored]
            facts = self._facts(conn, missing) if missing else {}
        half_life = self.policy.half_life
        features = [stored.get(i) or Features.of(facts.get(i, []), half_life) for i in ids]
        return ids, features

    def save_segments(self, results: Sequence[Any]) -> None:
        """Replaces the segments and every lead's segment with a new clustering."""
        now = self.clock()
        leads = schema.leads.c

        def work(conn: Connection) -> None:
            conn.execute(update(schema.leads).values(segment=None))
            conn.execute(schema.segments.delete())
            for r in results:
                conn.execute(
                    insert(schema.segments).values(
                        segment_id=r.segment_id,
                        name=r.name,
                        size=len(r.lead_ids),
                        dominant_features=r.dominant_features,
                        created_at=now,
                    )
                )
                for chunk in _chunks(list(r.lead_ids)):
                    conn.execute(
                        update(schema.leads)
                        .where(leads.lead_id.in_(chunk))
                        .values(segment=r.segment_id)
                    )

        self._write(work)

    def list_segments(self) -> list[dict[str, Any]]:
        s = schema.segments.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(schema.segments).order_by(s.size.desc(), s.name)).mappings()
            return [dict(r) for r in rows]

    def campaign_members(
        self, campaign_ids: Sequence[str], since: datetime | None
    ) -> list[tuple[str, str, bool, bool, str]]:
        """(lead, campaign, in control group, won, segment name) for every campaign signal."""
        sig, leads, seg = schema.signals.c, schema.leads.c, schema.segments.c
        query = (
            select(sig.lead_id, sig.campaign_id, sig.attributes, leads.stage, seg.name)
            .join(schema.leads, leads.lead_id == sig.lead_id)
            .outerjoin(schema.segments, seg.segment_id == leads.segment)
            .where(sig.campaign_id != "")
        )
        if campaign_ids:
            query = query.where(sig.campaign_id.in_(list(campaign_ids)))
        if since is not None:
            query = query.where(sig.occurred_at >= since)
        with self.engine.connect() as conn:
            return [
                (
                    r.lead_id,
                    r.campaign_id,
                    (r.attributes or {}).get("campaign_group") == "control",
                    r.stage == leads_pb2.LEAD_STAGE_WON,
                    r.name or "",
                )
                for r in conn.execute(query)
            ]

    def purge_expired(self, default_days: float, by_kind: dict[str, float]) -> tuple[int, int]:
        """Deletes signals past their kind's retention; leads left without signals go too.

        Returns (signals deleted, leads deleted). Remaining leads are recomputed.
        """
        now = self.clock()
        sig, leads, ident = schema.signals.c, schema.leads.c, schema.identities.c
        kinds = {
            common_pb2.SignalKind.Value(f"SIGNAL_KIND_{name.upper()}"): days
            for name, days in by_kind.items()
        }
        conditions = [
            and_(sig.kind == kind, sig.occurred_at < now - timedelta(days=days))
            for kind, days in kinds.items()
        ]
        conditions.append(
            and_(sig.kind.not_in(list(kinds)), sig.occurred_at < now - timedelta(days=default_days))
        )
        expired = or_(*conditions)

        def work(conn: Connection) -> tuple[int, list[str]]:
            if self.shared and not conn.scalar(select(func.pg_try_advisory_xact_lock(PURGE_LOCK))):
                return 0, []  # another replica is purging now
            touched = sorted(set(conn.scalars(select(sig.lead_id).where(expired).distinct())))
            if not touched:
                return 0, []
            deleted = conn.execute(schema.signals.delete().where(expired)).rowcount
            emptied = [
                lead
                for lead in touched
                if conn.scalar(select(sig.signal_id).where(sig.lead_id == lead).limit(1)) is None
            ]
            if emptied:
                absorbed = list(
                    conn.scalars(select(leads.lead_id).where(leads.merged_into.in_(emptied)))
                )
                gone = [*emptied, *absorbed]
                conn.execute(schema.identities.delete().where(ident.lead_id.in_(gone)))
                conn.execute(
                    schema.merges.delete().where(
                        or_(
                            schema.merges.c.survivor_id.in_(gone),
                            schema.merges.c.absorbed_id.in_(gone),
                        )
                    )
                )
                suggestions = schema.merge_suggestions.c
                conn.execute(
                    schema.merge_suggestions.delete().where(
                        or_(suggestions.lead_a.in_(gone), suggestions.lead_b.in_(gone))
                    )
                )
                conn.execute(
                    update(schema.leads).where(leads.lead_id.in_(gone)).values(merged_into=None)
                )
                conn.execute(schema.leads.delete().where(leads.lead_id.in_(gone)))
            self._refresh(conn, [lead for lead in touched if lead not in emptied], now)
            return deleted, emptied

        deleted, emptied = self._write(work)
        if not deleted:
            return 0, 0
        log.info("retention purge", extra={"signals": deleted, "leads": len(emptied)})
        return deleted, len(emptied)

    def facts_of(self, lead_id: str) -> list[SignalFacts]:
        """Every signal of a lead, as scoring sees them (training, audits)."""
        with self.engine.connect() as conn:
            return self._facts(conn, [lead_id]).get(lead_id, [])

    def rows(self, lead_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Stored state of these leads (those that still exist), with their keys."""
        c = schema.leads.c
        with self.engine.connect() as conn:
            rows = []
            for chunk in _chunks(list(lead_ids)):
                rows += [
                    dict(r)
                    for r in conn.execute(
                        select(schema.leads).where(c.lead_id.in_(chunk))
                    ).mappings()
                ]
            keys = self._keys_of(conn, [r["lead_id"] for r in rows])
        for row in rows:
            row["keys"] = keys.get(row["lead_id"], [])
        return rows

    # -- queries --------------------------------------------------------------

    def get(self, lead_id: str, *, include_timeline: bool = False) -> LeadView | None:
        """The lead (following merges to the survivor), scored as of now."""
        leads, ident, sig = schema.leads.c, schema.identities.c, schema.signals.c
        with self.engine.connect() as conn:
            row = None
            for _ in range(64):  # merge chains are flattened; this only guards against cycles
                row = (
                    conn.execute(select(schema.leads).where(leads.lead_id == lead_id))
                    .mappings()
                    .first()
                )
                if row is None or row["merged_into"] is None:
                    break
                lead_id = row["merged_into"]
            if row is None:
                return None
            keys = [
                IdentityKey(r.key_type, r.key_value)
                for r in conn.execute(
                    select(ident.key_type, ident.key_value)
                    .where(ident.lead_id == lead_id)
                    .order_by(ident.first_seen_at, ident.key_type)
                )
            ]
            features = self._stored_features(conn, [lead_id]).get(lead_id) or Features.of(
                self._facts(conn, [lead_id]).get(lead_id, []), self.policy.half_life
            )
            timeline = []
            if include_timeline:
                timeline = [
                    dict(r)
                    for r in conn.execute(
                        select(
                            sig.signal_id,
                            sig.source,
                            sig.kind,
                            sig.name,
                            sig.value,
                            sig.numeric_value,
                            sig.evidence,
                            sig.occurred_at,
                        )
                        .where(sig.lead_id == lead_id)
                        .order_by(sig.occurred_at, sig.signal_id)
                    ).mappings()
                ]
        return LeadView(
            dict(row),
            keys,
            assess_features(features, self.clock(), self.policy, model=self.active_model()),
            timeline,
        )

    def page(
        self, where: LeadFilter, page_size: int, page_token: str
    ) -> tuple[list[dict[str, Any]], str]:
        """A page of leads in creation order (stable under updates) and the next page's token."""
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        c = schema.leads.c
        clauses: list[ColumnElement[bool]] = [c.merged_into.is_(None)]
        if where.classes:
            clauses.append(c.lead_class.in_(where.classes))
        if where.stages:
            clauses.append(c.stage.in_(where.stages))
        if where.product_interest:
            clauses.append(c.product_interest == where.product_interest.lower())
        if where.min_score:
            clauses.append(c.score >= where.min_score)
        if where.max_score:
            clauses.append(c.score <= where.max_score)
        if where.updated_since:
            clauses.append(c.updated_at >= where.updated_since)
        if where.segment:
            clauses.append(c.segment == where.segment)
        if page_token:
            created, lead_id = self._read_token(page_token, where)
            clauses.append(
                or_(c.created_at > created, and_(c.created_at == created, c.lead_id > lead_id))
            )
        query = (
            select(schema.leads).where(*clauses).order_by(c.created_at, c.lead_id).limit(size + 1)
        )
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
            keys = self._keys_of(conn, [r["lead_id"] for r in rows[:size]])
        for row in rows:
            row["keys"] = keys.get(row["lead_id"], [])
        if len(rows) <= size:
            return rows, ""
        last = rows[size - 1]
        return rows[:size], self._make_token(utc(last["created_at"]), last["lead_id"], where)

    def _keys_of(self, conn: Connection, lead_ids: list[str]) -> dict[str, list[IdentityKey]]:
        ident = schema.identities.c
        keys: dict[str, list[IdentityKey]] = {}
        for chunk in _chunks(lead_ids):
            rows = conn.execute(
                select(ident.lead_id, ident.key_type, ident.key_value)
                .where(ident.lead_id.in_(chunk))
                .order_by(ident.first_seen_at, ident.key_type)
            )
            for r in rows:
                keys.setdefault(r.lead_id, []).append(IdentityKey(r.key_type, r.key_value))
        return keys

    def _make_token(self, created: datetime, lead_id: str, where: LeadFilter) -> str:
        body = json.dumps({"c": created.isoformat(), "i": lead_id, "f": where.fingerprint()})
        payload = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
        mac = hmac.new(self._token_key, payload.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{payload}.{mac}"

    def _read_token(self, token: str, where: LeadFilter) -> tuple[datetime, str]:
        payload, _, mac = token.partition(".")
        expected = hmac.new(self._token_key, payload.encode(), hashlib.sha256).hexdigest()[:32]
        if not mac or not hmac.compare_digest(mac, expected):
            raise InvalidPageTokenError(
                "page_token: not issued by this server (forged or corrupted)"
            )
        body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        if body["f"] != where.fingerprint():
            raise InvalidPageTokenError(
                "page_token: issued for another filter; start from page one"
            )
        return datetime.fromisoformat(body["c"]), str(body["i"])


_REFRESH = BulkWrite(
    update(schema.leads)
    .where(schema.leads.c.lead_id == bindparam("target"))
    .values(
        {
            name: bindparam(name)
            for name in (
                "score",
                "lead_class",
                "stage",
                "product_interest",
                "qualification",
                "channels",
                "signal_count",
                "updated_at",
                "last_signal_at",
            )
        }
    )
)
_INSERT_LEADS = BulkWrite(insert(schema.leads))
_INSERT_SIGNALS = BulkWrite(insert(schema.signals))
_INSERT_IDENTITIES = BulkWrite(insert(schema.identities))


def _who(
    s: ValidSignal,
    owner: dict[IdentityKey, str],
    leads: _Leads,
    exclusive: dict[str, dict[str, set[str]]],
) -> tuple[list[str], list[tuple[str, IdentityKey]]]:
    """The leads a signal belongs to (oldest first: they merge), and those a key of it
    links but it must not join: a lead holding another e-mail (CRM id) than the signal
    or the rest of the group, linked only through a weaker key (a shared phone)."""
    link: dict[str, int] = {}
    via: dict[str, IdentityKey] = {}
    for key in s.keys:
        if key in owner:
            lead = leads.find(owner[key])
            if STRENGTH[key.key_type] > link.get(lead, -1):
                link[lead], via[lead] = STRENGTH[key.key_type], key
    held: dict[str, set[str]] = {}
    for key in s.keys:
        if key.key_type in EXCLUSIVE:
            held.setdefault(key.key_type, set()).add(key.value)
    group: list[str] = []
    blocked: list[tuple[str, IdentityKey]] = []
    for lead in sorted(link, key=lambda x: (-link[x], leads.created[x], x)):
        theirs = exclusive.get(lead, {})
        if any(
            held.get(key_type) and not held[key_type] & values and STRENGTH[key_type] > link[lead]
            for key_type, values in theirs.items()
        ):
            blocked.append((lead, via[lead]))
            continue
        group.append(lead)
        for key_type, values in theirs.items():
            held.setdefault(key_type, set()).update(values)
    group.sort(key=lambda x: (leads.created[x], x))
    return group, blocked


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _facts_of(s: ValidSignal) -> SignalFacts:
    return SignalFacts(
        s.source,
        s.kind,
        s.name,
        s.value,
        s.numeric_value,
        s.confidence,
        s.occurred_at,
        tuple(k.key_type for k in s.keys),
    )


def _conflict(signal_id: str) -> str:
    return f"signal {signal_id}: signal_id already stored with different content; original kept"


def _signal_row(s: ValidSignal, lead: str, now: datetime) -> dict[str, Any]:
    return {
        "signal_id": s.signal_id,
        "content_hash": s.content_hash,
        "lead_id": lead,
        "origin_lead_id": lead,
        "source": s.source,
        "kind": s.kind,
        "name": s.name,
        "value": s.value,
        "numeric_value": s.numeric_value,
        "confidence": s.confidence,
        "evidence": s.evidence,
        "campaign_id": s.campaign_id,
        "identity": {k.key_type: k.value for k in s.keys},
        "attributes": s.attributes,
        "occurred_at": s.occurred_at,
        "received_at": now,
    }
