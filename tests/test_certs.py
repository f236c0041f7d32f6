# The town CA tool: files and modes, what openssl thinks of the certificates, refusals, the CLI.
from __future__ import annotations

import argparse
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from station.town import ca as certs
from station.town.cli import add_certs_parser


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def ca_dir(tmp_path):
    certs.init_ca(tmp_path / "ca", name="Test Town CA")
    return tmp_path / "ca"


def test_init_ca_writes_a_ca_certificate_and_a_private_key(ca_dir):
    assert _mode(ca_dir / "ca.key") == 0o600
    cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Test Town CA"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    out = _openssl("x509", "-in", str(ca_dir / "ca.crt"), "-noout", "-text")
    assert out.returncode == 0 and "CA:TRUE" in out.stdout


def test_init_ca_refuses_to_replace_an_existing_ca(ca_dir):
    before = (ca_dir / "ca.key").read_bytes()
    with pytest.raises(certs.CertError, match="ca.crt: already exists"):
        certs.init_ca(ca_dir)
    assert (ca_dir / "ca.key").read_bytes() == before


def test_station_client_certificate_verifies_with_openssl(ca_dir, tmp_path):
    out = certs.issue(ca_dir, "st-0001", tmp_path / "st")
    assert (out.cert_file.name, out.key_file.name) == ("st-0001.crt", "st-0001.key")
    assert _mode(out.key_file) == 0o600
    ca = str(ca_dir / "ca.crt")
    ok = _openssl("verify", "-CAfile", ca, "-purpose", "sslclient", str(out.cert_file))
    assert ok.returncode == 0, ok.stderr
    # A client certificate must not pass as a server: a stolen station cert cannot impersonate the broker.
    bad = _openssl("verify", "-CAfile", ca, "-purpose", "sslserver", str(out.cert_file))
    assert bad.returncode != 0
    cert = x509.load_pem_x509_certificate(out.cert_file.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=st-0001"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_server_certificate_carries_the_requested_names(ca_dir, tmp_path):
    out = certs.issue(ca_dir, "broker.town.example", tmp_path / "srv", server=True,
                      san=["broker.town.example", "localhost", "127.0.0.1"])
    ca = str(ca_dir / "ca.crt")
    assert _openssl("verify", "-CAfile", ca, "-purpose", "sslserver", str(out.cert_file)).returncode == 0
    check = _openssl("x509", "-in", str(out.cert_file), "-noout", "-checkhost", "localhost",
                     "-checkip", "127.0.0.1")
    assert "does match certificate" in check.stdout and "NOT" not in check.stdout
    other = _openssl("x509", "-in", str(out.cert_file), "-noout", "-checkhost", "evil.example")
    assert "does NOT match" in other.stdout


@pytest.mark.parametrize("cn", ["", " ", "st/0001", "st+0001", "st#", "+", "#", "st-0001\n", "x" * 65])
def test_cn_unusable_as_acl_username_is_refused(ca_dir, tmp_path, cn):
    with pytest.raises(certs.CertError, match="CN"):
        certs.issue(ca_dir, cn, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_ca_is_named(tmp_path):
    with pytest.raises(certs.CertError, match=r"nowhere/ca\.crt: CA file missing; run `station certs init-ca"):
        certs.issue(tmp_path / "nowhere", "st-0001", tmp_path / "out")


def test_existing_key_is_not_overwritten(ca_dir, tmp_path):
    first = certs.issue(ca_dir, "st-0001", tmp_path / "st")
    key = first.key_file.read_bytes()
    with pytest.raises(certs.CertError, match="st-0001.key: already exists"):
        certs.issue(ca_dir, "st-0001", tmp_path / "st")
    assert first.key_file.read_bytes() == key


def test_key_of_another_ca_is_detected(ca_dir, tmp_path):
    certs.init_ca(tmp_path / "other")
    (ca_dir / "ca.key").write_bytes((tmp_path / "other" / "ca.key").read_bytes())
    with pytest.raises(certs.CertError, match="ca.key: does not belong to"):
        certs.issue(ca_dir, "st-0001", tmp_path / "st")


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="station")
    add_certs_parser(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_init_ca_and_issue(tmp_path, capsys):
    ca = tmp_path / "ca"
    assert _cli("certs", "init-ca", "--dir", str(ca), "--name", "Nong'an Town 01 CA", "--days", "30") == 0
    assert _cli("certs", "issue", "--ca-dir", str(ca), "--cn", "st-0001", "--out", str(tmp_path / "st")) == 0
    assert _cli("certs", "issue", "--ca-dir", str(ca), "--cn", "localhost", "--out", str(tmp_path / "srv"),
                "--server", "--san", "localhost,127.0.0.1") == 0
    assert "st-0001.key (mode 0600)" in capsys.readouterr().out
    res = _openssl("verify", "-CAfile", str(ca / "ca.crt"), str(tmp_path / "st" / "st-0001.crt"),
                   str(tmp_path / "srv" / "localhost.crt"))
    assert res.returncode == 0, res.stderr


def test_cli_errors_are_one_line_and_exit_1(tmp_path, capsys):
    assert _cli("certs", "issue", "--ca-dir", str(tmp_path / "none"), "--cn", "st-0001",
                "--out", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("station certs: ") and "ca.crt" in err
    certs.init_ca(tmp_path / "ca")
    assert _cli("certs", "issue", "--ca-dir", str(tmp_path / "ca"), "--cn", "a/b", "--out", str(tmp_path)) == 1
    assert "'/'" in capsys.readouterr().err
    assert _cli("certs", "issue", "--ca-dir", str(tmp_path / "ca"), "--cn", "st-0001", "--out", str(tmp_path),
                "--san", "localhost") == 1
    assert "--san is only meaningful with --server" in capsys.readouterr().err
