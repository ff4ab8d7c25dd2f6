"""Throwaway certificates for TLS tests, made with the `openssl` CLI in a test's tmp folder.

`make_certs(folder)` writes a CA, a server certificate for 127.0.0.1 and localhost, a
client certificate signed by the same CA, and a client certificate signed by another CA
(which an mTLS server must refuse). P-256 keys, valid for a day. The venv has no
`cryptography`, and openssl is on every machine that runs these tests.

    certs = make_certs(tmp_path)
    tls = load_tls(certs.server_cert, certs.server_key, certs.ca)
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

_CONFIG = """
[req]
distinguished_name = dn
prompt = no
[dn]
CN = servegate test
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

_NEW_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Certs:
    """PEM files: a CA, a server pair (SAN 127.0.0.1, localhost) and client pairs."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    """A client certificate from another CA: an mTLS server must refuse it."""
    stranger_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str, config: Path) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl("req", "-x509", "-new", *_NEW_KEY, "-keyout", key, "-out", cert, "-days", "1",
             "-config", config, "-extensions", "ca", "-subj", f"/CN={name}")  # fmt: skip
    return cert, key


def _signed(
    folder: Path, name: str, config: Path, ca: tuple[Path, Path], extensions: str, serial: int
) -> tuple[Path, Path]:
    cert, key, csr = folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr"
    _openssl("req", "-new", *_NEW_KEY, "-keyout", key, "-out", csr, "-config", config,
             "-subj", f"/CN={name}")  # fmt: skip
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-set_serial", serial,
             "-days", "1", "-out", cert, "-extfile", config, "-extensions", extensions)  # fmt: skip
    return cert, key


def make_certs(folder: Path) -> Certs:
    """Writes every file into `folder` (which must exist) and returns their paths."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make test certificates")
    config = folder / "openssl.cnf"
    config.write_text(_CONFIG)
    ca = _ca(folder, "ca", config)
    server = _signed(folder, "server", config, ca, "server", 1)
    client = _signed(folder, "client", config, ca, "client", 2)
    other_ca = _ca(folder, "other-ca", config)
    stranger = _signed(folder, "stranger", config, other_ca, "client", 3)
    return Certs(ca[0], *server, *client, *stranger)
