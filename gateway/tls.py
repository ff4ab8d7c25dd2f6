"""Front door: TLS for the HTTP and gRPC front ends from certificate files, mTLS optional.

`load_tls` checks every file once, at start (readable, PEM, key matching the certificate,
a CA file holding a certificate), so a bad path fails loudly before any port is bound
rather than as an obscure handshake error later. `uvicorn_ssl_kwargs` and
`grpc_server_credentials` turn the checked files into what each server takes; both
require client certificates signed by the client CA when one is given.
`exposure_warning` is the loud line for a non-loopback bind without keys or TLS.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc


class TLSConfigError(ValueError):
    """A certificate, key or CA file the gateway refuses to start with."""


@dataclass(frozen=True)
class TLSConfig:
    """Checked TLS files and their contents (read once, so both servers serve the same)."""

    certfile: Path
    """The server's certificate chain (PEM): its certificate first, then intermediates."""
    keyfile: Path
    """The server's private key (PEM, unencrypted: gRPC takes no password)."""
    client_ca: Path | None = None
    """CA certificates (PEM) that sign client certificates; set: clients must present one."""
    cert_pem: bytes = field(default=b"", repr=False)
    key_pem: bytes = field(default=b"", repr=False)
    ca_pem: bytes | None = field(default=None, repr=False)

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TLSConfigError(f"TLS {what} {path}: cannot read it ({exc.strerror})") from None


def load_tls(
    certfile: Path | str | None, keyfile: Path | str | None, client_ca: Path | str | None = None
) -> TLSConfig | None:
    """Checked files, or None when neither certificate nor key is given (TLS off).

    Raises TLSConfigError for half a pair, a client CA without a server certificate, an
    unreadable file, a key that does not match the certificate, or a CA file without one.
    """
    if certfile is None and keyfile is None:
        if client_ca is not None:
            raise TLSConfigError("a TLS client CA needs a server certificate and key as well")
        return None
    if certfile is None or keyfile is None:
        raise TLSConfigError("TLS needs both a certificate file and its key file")
    cert, key = Path(certfile), Path(keyfile)
    ca = Path(client_ca) if client_ca is not None else None
    cert_pem, key_pem = _read(cert, "certificate"), _read(key, "key")
    ca_pem = _read(ca, "client CA") if ca is not None else None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise TLSConfigError(
            f"TLS certificate {cert} and key {key}: not a PEM certificate and its matching "
            f"unencrypted key ({exc.reason or exc})"
        ) from None
    if ca is not None:
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError as exc:
            raise TLSConfigError(
                f"TLS client CA {ca}: no PEM certificate in it ({exc.reason or exc})"
            ) from None
    return TLSConfig(cert, key, ca, cert_pem, key_pem, ca_pem)


def uvicorn_ssl_kwargs(tls: TLSConfig | None) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config(...)`: {} without TLS."""
    if tls is None:
        return {}
    return {
        "ssl_certfile": str(tls.certfile),
        "ssl_keyfile": str(tls.keyfile),
        "ssl_ca_certs": str(tls.client_ca) if tls.client_ca is not None else None,
        "ssl_cert_reqs": ssl.CERT_REQUIRED if tls.mutual else ssl.CERT_NONE,
    }


def grpc_server_credentials(tls: TLSConfig) -> grpc.ServerCredentials:
    """For `server.add_secure_port(address, credentials)`; mTLS when a client CA is set."""
    return grpc.ssl_server_credentials(
        [(tls.key_pem, tls.cert_pem)],
        root_certificates=tls.ca_pem,
        require_client_auth=tls.mutual,
    )


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (also bracketed or IPv4-mapped) and `localhost`; never resolves DNS."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # another host name: it may resolve to anything
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def exposure_warning(host: str, auth_on: bool, tls_on: bool) -> str | None:
    """A loud message when `host` is reachable from other machines without keys or TLS."""
    if is_loopback(host):
        return None
    missing = [
        what
        for what, on in (("API keys (anyone may call, admin routes included)", auth_on),
                         ("TLS (keys and tensors cross the network in clear text)", tls_on))
        if not on
    ]  # fmt: skip
    if not missing:
        return None
    where = host or "every interface"
    return (
        f"WARNING: servegate binds {where}, reachable beyond this machine, without "
        + " and without ".join(missing)
        + ". Set SERVEGATE_API_KEYS_FILE (or SERVEGATE_INFER_KEYS / SERVEGATE_ADMIN_KEYS) "
        "and SERVEGATE_TLS_CERTFILE / SERVEGATE_TLS_KEYFILE, or bind 127.0.0.1."
    )
