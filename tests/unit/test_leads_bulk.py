"""BulkWrite stores exactly what SQLAlchemy's own executemany stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, create_engine, insert, text, update

from percept.leads import schema
from percept.leads.bulk import BulkWrite

NOW = datetime(2026, 12, 2, 9, 30, 15, 123456, tzinfo=UTC)


def signal_rows() -> list[dict[str, Any]]:
    return [
        {
            "signal_id": f"s{i}",
            "content_hash": "f" * 64,
            "lead_id": f"lead{i % 3}",
            "origin_lead_id": f"lead{i % 3}",
            "source": 1 + i % 3,
            "kind": 1,
            "name": "purchase_intent",
            "value": "é ünïcode ☎" if i % 2 else "",
            "numeric_value": i / 7,
            "confidence": 0.5,
            "evidence": "",
            "campaign_id": "",
            "identity": {"phone": f"+1415555{i:04d}", "chat_session_id": f"chat-{i}"},
            "attributes": {} if i % 2 else {"page": "/laptops"},
            "occurred_at": NOW - timedelta(seconds=i, microseconds=i),  # one per row
            "received_at": NOW,  # one for all rows: processed once
        }
        for i in range(7)
    ]


def lead_rows() -> list[dict[str, Any]]:
    return [
        {
            "lead_id": f"lead{i}",
            "created_at": NOW - timedelta(days=i),
            "updated_at": NOW,
            "last_signal_at": NOW,
            "score": 0.25,
            "lead_class": 1,
            "stage": 1,
            "product_interest": "",
            "signal_count": 0,
            "qualification": {},
            "channels": [],
            "features": None,
        }
        for i in range(3)
    ]


UPDATE = update(schema.leads).where(schema.leads.c.lead_id == bindparam("target"))


def updates() -> list[dict[str, Any]]:
    return [
        {
            "target": f"lead{i}",
            "score": 0.5 + i / 10,
            "qualification": {"budget": "1000 USD"},
            "channels": [1, 3],
            "updated_at": NOW + timedelta(hours=1),
            "last_signal_at": NOW - timedelta(minutes=i),
            "features": {"half_life_s": 1209600.0, "returns": None},
        }
        for i in range(3)
    ]


def stored(write: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Each table's rows as the driver returns them: the stored text, not parsed back."""
    engine = create_engine("sqlite://")
    schema.metadata.create_all(engine)
    with engine.begin() as conn:
        write(conn)
        return {
            table: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY 1"))]
            for table in ("leads", "signals")
        }


def test_rows_match_sqlalchemy_executemany() -> None:
    def by_sqlalchemy(conn: Any) -> None:
        conn.execute(insert(schema.leads), lead_rows())
        conn.execute(insert(schema.signals), signal_rows())
        conn.execute(UPDATE, updates())

    def by_bulk(conn: Any) -> None:
        BulkWrite(insert(schema.leads))(conn, lead_rows())
        BulkWrite(insert(schema.signals))(conn, signal_rows())
        BulkWrite(UPDATE)(conn, updates())

    expected, got = stored(by_sqlalchemy), stored(by_bulk)
    assert len(got["signals"]) == 7 and len(got["leads"]) == 3
    assert got == expected
    # The raw stored text, as SQLAlchemy formats it for SQLite (not sqlite3's own adapter).
    assert got["leads"][0][2] == "2026-12-02 10:30:15.123456"


def test_a_plan_per_column_set() -> None:
    write = BulkWrite(UPDATE)

    def twice(conn: Any) -> None:
        conn.execute(insert(schema.leads), lead_rows())
        write(conn, [{"target": "lead1", "score": 0.9}])
        write(conn, [{"target": "lead2", "stage": 3}])
        write(conn, [])  # nothing to do, no statement

    leads = {row[0]: row for row in stored(twice)["leads"]}
    assert leads["lead1"][4] == 0.9 and leads["lead1"][6] == 1
    assert leads["lead2"][4] == 0.25 and leads["lead2"][6] == 3


def test_a_row_without_a_column_is_an_error() -> None:
    def ragged(conn: Any) -> None:
        rows = lead_rows()
        del rows[1]["score"]
        BulkWrite(insert(schema.leads))(conn, rows)

    with pytest.raises(KeyError, match="score"):
        stored(ragged)
