"""Batch writes without SQLAlchemy's per-row parameter handling.

`Connection.execute(stmt, rows)` builds and type-processes a parameter dict per
row in Python; on a 500-signal batch that costs more than SQLite's own work.
`BulkWrite` compiles its statement once per dialect and column set, applies each
column's own bind processor (the one SQLAlchemy would apply) and hands the
driver's `executemany` plain tuples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.sql.dml import UpdateBase

_Processor = Callable[[Any], Any] | None
_Plan = tuple[str, list[tuple[str, _Processor]]]


class BulkWrite:
    """An INSERT or UPDATE run over many rows; every row carries the same keys."""

    def __init__(self, stmt: UpdateBase) -> None:
        self.stmt = stmt
        self._plans: dict[tuple[str, tuple[str, ...]], _Plan] = {}

    def __call__(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        dialect = conn.dialect
        if not dialect.positional:
            # Named paramstyles (psycopg): SQLAlchemy batches these into multi-row statements.
            conn.execute(self.stmt, list(rows))
            return
        keys = tuple(rows[0])
        plan = self._plans.get((dialect.name, keys))
        if plan is None:
            plan = self._plans[(dialect.name, keys)] = self._plan(conn, keys)
        sql, columns = plan
        values = [_column(rows, key, processor) for key, processor in columns]
        conn.exec_driver_sql(sql, list(zip(*values, strict=True)))

    def _plan(self, conn: Connection, keys: tuple[str, ...]) -> _Plan:
        compiled = self.stmt.compile(dialect=conn.dialect, column_keys=list(keys))
        # The processors SQLAlchemy itself applies: a bare bindparam() in values() takes its
        # column's type there, which `compiled.binds` does not show.
        processors = compiled._bind_processors
        plan = []
        for name in compiled.positiontup or ():
            processor = processors.get(name)
            if not (processor is None or callable(processor)):  # tuple-valued binds: none here
                raise TypeError(f"BulkWrite: {name} is a tuple-valued parameter")
            plan.append((compiled.binds[name].key, cast(_Processor, processor)))
        return compiled.string, plan


def _column(rows: Sequence[dict[str, Any]], key: str, processor: _Processor) -> list[Any]:
    """One column's driver values; a value shared by every row (the batch's time) is
    processed once."""
    values = [row[key] for row in rows]
    if processor is None:
        return values
    first = values[0]
    if all(v is first for v in values):
        return [processor(first)] * len(values)
    return [processor(v) for v in values]
