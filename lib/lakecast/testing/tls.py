"""TLS material for tests: a self-signed server certificate and a CA with one client certificate.

Made with ``cryptography`` in a folder of the caller's (EC P-256, valid for a day), so that a test
can scrape or call a real TLS endpoint on 127.0.0.1 and present a client certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pki:
    """A self-signed server certificate for 127.0.0.1 and a CA with one client certificate."""

    cert: Path
    key: Path
    client_ca: Path
    client_cert: Path
    client_key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    ip: str | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_pki(folder: Path) -> Pki:
    """Write the server's and a client's certificate and key, and the client CA, to ``folder``."""
    pem = serialization.Encoding.PEM
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate("127.0.0.1", server_key, "127.0.0.1", server_key, ca=True, ip="127.0.0.1")
    ca_key, client_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = _certificate("scrapers CA", ca_key, "scrapers CA", ca_key, ca=True)
    client = _certificate("prometheus", client_key, "scrapers CA", ca_key, ca=False)
    files = {
        "cert.pem": server.public_bytes(pem),
        "key.pem": _key_pem(server_key),
        "client-ca.pem": ca.public_bytes(pem),
        "client.pem": client.public_bytes(pem),
        "client-key.pem": _key_pem(client_key),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return Pki(*(folder / name for name in files))
