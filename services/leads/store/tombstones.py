"""Erasure tombstones: what an erasure keeps so that the erased person stays erased.

Senders deliver signals at least once (outboxes retry until acknowledged), so a signal
leads stored and erased may come again (its ack was lost), and one a sender queued
before the erasure may arrive after it. Either would bring the erased person back. An
erasure therefore keeps, with nothing personal in it:

- a keyed hash of each erased signal's id: that signal is dropped whenever it comes;
- a keyed hash of each erased identity key that was the person's alone (not one seen
  with other people, whose signals it would drop), with the erasure time: a signal carrying
  such a key is dropped if it occurred at or before that time (it is from before the
  erasure); one that occurred later is the person coming back (new consent) and is
  stored as a new lead.

The hashes are HMAC-SHA256 with the store's own secret (`erasure_key` in
store_settings): without it nobody can test whether a given e-mail or phone was erased.
Dropped signals are answered as duplicates (already dealt with: the sender must not
retry them). The retention purge deletes tombstones older than the longest signal
retention: a signal that old is expired when it comes back.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache

from sqlalchemy import Connection, insert, select, update

from percept.leads import schema
from percept.leads.identity import IdentityKey
from percept.leads.store.base import _chunks, utc
from percept.leads.validation import ValidSignal


def signal_digest(secret: bytes, signal_id: str) -> str:
    return hmac.digest(secret, b"signal\0" + signal_id.encode(), "sha256").hex()


@lru_cache(maxsize=65536)  # the same callers' keys recur in batch after batch
def key_digest(secret: bytes, key: IdentityKey) -> str:
    message = f"key\0{key.key_type}\0{key.value}".encode()
    return hmac.digest(secret, message, "sha256").hex()


def erased(conn: Connection, secret: bytes, signals: Sequence[ValidSignal]) -> set[str]:
    """The ids of these signals an erasure covers: erased themselves, or carrying a key
    erased at or after they occurred."""
    es, ek = schema.erased_signals.c, schema.erased_keys.c
    by_digest = {signal_digest(secret, s.signal_id): s.signal_id for s in signals}
    dropped: set[str] = set()
    for chunk in _chunks(list(by_digest)):
        found = conn.scalars(select(es.signal_hash).where(es.signal_hash.in_(chunk)))
        dropped.update(by_digest[h] for h in found)
    digests = {k: key_digest(secret, k) for s in signals for k in s.keys}
    erased_at: dict[str, datetime] = {}
    for chunk in _chunks(sorted(set(digests.values()))):
        rows = conn.execute(select(ek.key_hash, ek.erased_at).where(ek.key_hash.in_(chunk)))
        erased_at.update({r.key_hash: utc(r.erased_at) for r in rows})
    if erased_at:
        for s in signals:
            for key in s.keys:
                at = erased_at.get(digests[key])
                if at is not None and s.occurred_at <= at:
                    dropped.add(s.signal_id)
                    break
    return dropped


def record(
    conn: Connection,
    secret: bytes,
    signal_ids: Iterable[str],
    keys: Iterable[IdentityKey],
    now: datetime,
) -> None:
    """Tombstones for an erasure at `now` (inside its write: one at a time)."""
    es, ek = schema.erased_signals.c, schema.erased_keys.c
    signal_hashes = sorted({signal_digest(secret, i) for i in signal_ids})
    for chunk in _chunks(signal_hashes):
        known = set(conn.scalars(select(es.signal_hash).where(es.signal_hash.in_(chunk))))
        fresh = [{"signal_hash": h, "erased_at": now} for h in chunk if h not in known]
        if fresh:
            conn.execute(insert(schema.erased_signals), fresh)
    key_hashes = sorted({key_digest(secret, k) for k in keys})
    for chunk in _chunks(key_hashes):
        known = set(conn.scalars(select(ek.key_hash).where(ek.key_hash.in_(chunk))))
        if known:  # erased before, came back, erased again: from now
            conn.execute(
                update(schema.erased_keys).where(ek.key_hash.in_(known)).values(erased_at=now)
            )
        fresh = [{"key_hash": h, "erased_at": now} for h in chunk if h not in known]
        if fresh:
            conn.execute(insert(schema.erased_keys), fresh)


def purge(conn: Connection, before: datetime) -> int:
    """Deletes tombstones of erasures before `before`; how many."""
    gone = 0
    for table in (schema.erased_signals, schema.erased_keys):
        gone += conn.execute(table.delete().where(table.c.erased_at < before)).rowcount
    return gone
