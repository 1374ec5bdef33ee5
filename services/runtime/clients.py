"""Channels from one percept service to another.

gRPC keeps one long-lived HTTP/2 connection per channel, so a plain Kubernetes
Service (one virtual IP) would pin every call to one pod. Clients instead
resolve the headless Service's DNS name to every pod address and balance
calls round-robin across them; the resolver re-resolves as pods come and go.
"""

from __future__ import annotations

import json

import grpc

from percept.runtime.auth import own_key

SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)


Metadata = tuple[tuple[str, str], ...]


def bearer(api_key: str | None) -> Metadata:
    """gRPC metadata carrying an API key (none when there is no key)."""
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


def bearer_of(api_keys: list[str]) -> Metadata:
    """A service calling another presents the first configured key (without its scopes)."""
    return bearer(own_key(api_keys))


def channel_target(address: str) -> str:
    """`host:port` -> `dns:///host:port`, so that every resolved address is used. gRPC's
    own names pass as they are (`ipv4:10.0.0.1:50054,10.0.0.2:50054`, `unix:`, `dns:`)."""
    if "://" in address or address.startswith(("dns:", "ipv4:", "ipv6:", "unix:")):
        return address
    return f"dns:///{address}"


def service_channel(
    address: str, credentials: grpc.ChannelCredentials | None = None
) -> grpc.aio.Channel:
    """An aio channel balancing calls across every address `address` resolves to.

    Pass `percept.runtime.tls.channel_credentials(settings)` for TLS / mutual TLS.
    """
    options = [
        ("grpc.service_config", SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.dns_min_time_between_resolutions_ms", 5_000),
    ]
    target = channel_target(address)
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, credentials, options=options)
