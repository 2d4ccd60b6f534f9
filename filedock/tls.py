"""TLS contexts for both sides, with modern defaults (standard ``ssl`` module)."""

from __future__ import annotations

import ssl


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server context: TLS 1.2 at least, the system's recommended ciphers."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def client_context(cafile: str | None = None, *, insecure: bool = False) -> ssl.SSLContext:
    """A client context that checks the server's certificate and host name.

    ``cafile`` trusts a private CA instead of the system's store; ``insecure``
    checks nothing and is only for testing against a self-signed server.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
