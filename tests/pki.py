"""A throw-away certificate authority for TLS tests: a CA, a server certificate for
"localhost" only, and client certificates."""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class Pki:
    folder: Path

    def path(self, name: str) -> Path:
        return self.folder / name

    def context(self, client: str | None = None) -> ssl.SSLContext:
        """What a client trusts (the CA), with its certificate if ``client`` is named."""
        context = ssl.create_default_context(cafile=str(self.path("ca.pem")))
        if client is not None:
            context.load_cert_chain(self.path(f"{client}.pem"), self.path(f"{client}.key"))
        return context


def _key_and_name(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Name]:
    return ec.generate_private_key(ec.SECP256R1()), x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _write(
    folder: Path, name: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> None:
    (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_pki(folder: Path, clients: list[str]) -> Pki:
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_name = _key_and_name("gatewayd test CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write(folder, "ca", ca_key, ca)

    def issue(name: str, common_name: str, *, server: bool) -> None:
        key, subject = _key_and_name(common_name)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        if server:  # the broker is "localhost", and only that
            names = [x509.DNSName("localhost")]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        _write(folder, name, key, builder.sign(ca_key, hashes.SHA256()))

    issue("server", "localhost", server=True)
    for client in clients:
        issue(client, client, server=False)
    return Pki(folder)
