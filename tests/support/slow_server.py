"""A real percept server process with one slow method, for shutdown tests.

Usage: python slow_server.py PORT GRACE_SECONDS. `percept.test.Slow/Sleep`
takes the seconds to sleep as ASCII and answers b"slept" when done.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

import grpc

from percept.runtime.logs import configure_logging
from percept.runtime.server import ServiceHost, serve
from percept.runtime.settings import Settings

SERVICE = "percept.test.Slow"


class SlowService:
    name = "speech"  # borrows speech's settings slot for its ports

    @property
    def grpc_service_names(self) -> Sequence[str]:
        return (SERVICE,)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        async def sleep(request: bytes, context: Any) -> bytes:
            await asyncio.sleep(float(request.decode()))
            return b"slept"

        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(sleep)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Sleep": handler}),)
        )

    async def load(self) -> None:
        return None

    async def close(self) -> None:
        return None


def main() -> None:
    port, grace = int(sys.argv[1]), float(sys.argv[2])
    settings = Settings(speech_port=port, metrics_enabled=False, grace_period_s=grace)
    configure_logging("INFO", "json")
    asyncio.run(serve([ServiceHost(SlowService(), settings)], settings.grace_period_s))


if __name__ == "__main__":
    main()
