"""A service whose API is defined but not built yet: every method answers UNIMPLEMENTED.

Mounting it keeps health, reflection and the port layout real while the
service's logic is still being written; nothing pretends to work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor


def _pending(descriptor: ServiceDescriptor, method: str) -> Callable[..., Any]:
    message = f"{descriptor.full_name}/{method} is not implemented yet in this build"

    async def abort(
        self: object, request: object, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)

    return abort


def unimplemented_servicer(descriptor: ServiceDescriptor) -> object:
    """A servicer whose every method aborts with UNIMPLEMENTED naming the method."""
    namespace = {m.name: _pending(descriptor, m.name) for m in descriptor.methods}
    return type(f"Pending{descriptor.name}Servicer", (), namespace)()


@dataclass
class PendingService:
    name: str
    descriptor: ServiceDescriptor
    adder: Callable[[Any, grpc.aio.Server], None]

    @property
    def grpc_service_names(self) -> Sequence[str]:
        return (self.descriptor.full_name,)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        self.adder(unimplemented_servicer(self.descriptor), server)

    async def load(self) -> None:
        return None

    async def close(self) -> None:
        return None
