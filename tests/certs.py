"""Test certificates made with the openssl command: a CA, server and client certificates."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Pair:
    """A certificate and its unencrypted key, PEM files."""

    cert: Path
    key: Path


def _openssl(*args: str | Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make test certificates")
    subprocess.run([openssl, *map(str, args)], check=True, capture_output=True)


def _key_args(key: Path) -> list[str | Path]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key]


class CA:
    """A throw-away certificate authority in `folder` that signs server and client certificates."""

    def __init__(self, folder: Path, name: str = "augur-test-ca") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.cert = folder / f"{name}.pem"
        self.key = folder / f"{name}.key"
        _openssl(
            *("req", "-x509", *_key_args(self.key), "-out", self.cert, "-days", "2"),
            *("-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE"),
            *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        )

    def issue(
        self, name: str, *, client: bool = False, hosts: str = "IP:127.0.0.1,DNS:localhost"
    ) -> Pair:
        """A certificate for 127.0.0.1 and localhost (server) or a client certificate."""
        key = self.folder / f"{name}.key"
        csr = self.folder / f"{name}.csr"
        cert = self.folder / f"{name}.pem"
        ext = self.folder / f"{name}.ext"
        usage = "clientAuth" if client else "serverAuth"
        lines = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={usage}",
            "subjectKeyIdentifier=hash",
            "authorityKeyIdentifier=keyid,issuer",
        ]
        if not client:
            lines.append(f"subjectAltName={hosts}")
        ext.write_text("\n".join(lines) + "\n", encoding="utf-8")
        _openssl("req", *_key_args(key), "-out", csr, "-subj", f"/CN={name}")
        _openssl(
            *("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key),
            *("-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext),
        )
        return Pair(cert, key)
