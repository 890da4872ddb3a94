"""A development certificate authority and the local TLS edge's server certificate.

    python -m infra.local.certs --out build/local/tls [--host localhost --host 127.0.0.1]

writes ``ca.pem`` (the CA certificate clients trust: ``infra.deploy.smoke --ca-file``, a browser
import), ``ca-key.pem``, and ``edge.pem`` (server certificate, then the CA, then the server key:
the single file haproxy's ``crt`` takes). Keys are written mode 0600. An existing, still valid
set that covers the requested hosts is kept, so re-running the step changes nothing.

Everything is generated in Python with ``cryptography``: no openssl command line.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DEFAULT_HOSTS", "DevCertificates", "ensure_certificates", "main"]

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
_CA_DAYS = 825
_LEAF_DAYS = 397
_RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class DevCertificates:
    """Where the generated files are."""

    ca: Path
    """The CA certificate (PEM) clients trust."""
    edge: Path
    """Server certificate, CA certificate and server key in one PEM (haproxy ``crt``)."""


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _still_good(edge: Path, ca: Path, hosts: Sequence[str], now: datetime.datetime) -> bool:
    try:
        leaf = x509.load_pem_x509_certificate(edge.read_bytes())
        x509.load_pem_x509_certificate(ca.read_bytes())
    except (FileNotFoundError, ValueError):
        return False
    if leaf.not_valid_after_utc - _RENEW_BEFORE < now:
        return False
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(names) >= {_san(host) for host in hosts}


def ensure_certificates(
    out: Path, *, hosts: Sequence[str] = DEFAULT_HOSTS, now: datetime.datetime | None = None
) -> DevCertificates:
    """Create (or keep) the development CA and the edge certificate for ``hosts`` in ``out``."""
    if not hosts:
        raise ValueError("hosts must name at least one host, got []")
    now = now or datetime.datetime.now(datetime.UTC)
    files = DevCertificates(ca=out / "ca.pem", edge=out / "edge.pem")
    if _still_good(files.edge, files.ca, hosts, now):
        return files
    out.mkdir(parents=True, exist_ok=True)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "realtime-fly development"),
            x509.NameAttribute(NameOID.COMMON_NAME, "realtime-fly development CA"),
        ]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    _write_private(out / "ca-key.pem", _key_pem(ca_key))
    _write_private(
        files.edge,
        leaf_cert.public_bytes(serialization.Encoding.PEM) + ca_pem + _key_pem(leaf_key),
    )
    files.ca.write_bytes(ca_pem)
    return files


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints the CA path."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.certs", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--host", action="append", dest="hosts")
    args = parser.parse_args(argv)
    files = ensure_certificates(args.out, hosts=tuple(args.hosts or DEFAULT_HOSTS))
    print(files.ca)
    return 0


if __name__ == "__main__":
    sys.exit(main())
