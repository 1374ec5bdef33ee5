"""One vision replica reads the pulled cameras: the holder of a PostgreSQL advisory lock,
handed to another replica when it goes away (real PostgreSQL on loopback)."""

from __future__ import annotations

import asyncio

import pytest
from pg_cluster import ThrowawayCluster

from percept.vision.leader import SourceLeader

pytestmark = pytest.mark.slow


class Replica:
    def __init__(self, url: str) -> None:
        self.reading = False
        self.leader = SourceLeader(url, self.lead, self.lose, retry_s=0.2)
        self.task = asyncio.create_task(self.leader.run())

    async def lead(self) -> None:
        self.reading = True

    async def lose(self) -> None:
        self.reading = False

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.leader.close()


async def test_exactly_one_replica_reads_and_another_takes_over(
    postgres_cluster: ThrowawayCluster,
) -> None:
    url = postgres_cluster.new_database()
    replicas = [Replica(url) for _ in range(3)]
    try:
        await asyncio.sleep(1.5)
        assert sum(r.reading for r in replicas) == 1
        first = next(r for r in replicas if r.reading)
        await first.stop()  # the reader goes away: its session ends, the lock is free
        rest = [r for r in replicas if r is not first]
        async with asyncio.timeout(10):
            while True:
                if sum(r.reading for r in rest) == 1:
                    break
                await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        assert sum(r.reading for r in rest) == 1  # and stays one
    finally:
        for replica in replicas:
            await replica.stop()


async def test_on_sqlite_the_one_process_reads() -> None:
    replica = Replica("sqlite:///unused.db")
    await asyncio.sleep(0.1)
    assert replica.reading and not replica.leader.shared
    await replica.stop()
