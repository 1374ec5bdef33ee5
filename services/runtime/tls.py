"""TLS and mutual TLS for percept servers and the channels between services.

Certificates come from files (in Kubernetes, a mounted Secret). With a client
CA configured, a server accepts only callers presenting a certificate that CA
signed (mutual TLS); API keys still apply on top.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from percept.runtime.settings import Settings


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """Credentials for the gRPC port, or None for plain text (no certificate configured)."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    client_ca = _read(settings.tls_client_ca_file)
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """Credentials for calling another percept service, or None for plain text.

    The server is verified against `tls_ca_file`; this service's own certificate
    (when it has one) is presented, so mutual TLS works in both directions.
    """
    if settings.tls_ca_file is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=settings.tls_ca_file.read_bytes(),
        private_key=_read(settings.tls_key_file),
        certificate_chain=_read(settings.tls_cert_file),
    )
