"""infra.local.certs makes a development CA and an edge certificate a TLS client accepts"""

from __future__ import annotations

import datetime
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from infra.local.certs import ensure_certificates


def test_edge_certificate_verifies_against_the_ca_for_each_host(tmp_path: Path) -> None:
    """A client trusting ca.pem verifies edge.pem for localhost and 127.0.0.1."""
    files = ensure_certificates(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files.edge)  # certificate, chain and key from one file
    client = ssl.create_default_context(cafile=str(files.ca))
    leaf = x509.load_pem_x509_certificate(files.edge.read_bytes())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert client.verify_mode == ssl.CERT_REQUIRED


def test_keys_are_private(tmp_path: Path) -> None:
    """Files holding private keys are readable by the owner only."""
    ensure_certificates(tmp_path)
    for name in ("edge.pem", "ca-key.pem"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_a_valid_set_is_kept(tmp_path: Path) -> None:
    """Running again with the same hosts rewrites nothing."""
    first = ensure_certificates(tmp_path)
    before = first.edge.read_bytes()
    ensure_certificates(tmp_path)
    assert first.edge.read_bytes() == before


def test_a_new_host_or_near_expiry_renews(tmp_path: Path) -> None:
    """A host not covered, or a certificate 30 days from expiry, gives a new certificate."""
    files = ensure_certificates(tmp_path)
    before = files.edge.read_bytes()
    ensure_certificates(tmp_path, hosts=("localhost", "edge.test"))
    renewed = files.edge.read_bytes()
    assert renewed != before
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=380)
    ensure_certificates(tmp_path, hosts=("localhost", "edge.test"), now=later)
    assert files.edge.read_bytes() != renewed


def test_no_hosts_is_refused(tmp_path: Path) -> None:
    """An empty host list is an error naming the value."""
    with pytest.raises(ValueError, match=r"got \[\]"):
        ensure_certificates(tmp_path, hosts=())
