"""Trust on first use for TLS (as ssh's known_hosts), with real TLS servers on
127.0.0.1 whose certificates no CA of the system signed: the first connection
pins, the next passes, another certificate is refused with both fingerprints
until it is accepted, and a damaged known_servers file is refused."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

import filedock
from filedock.cli.client import client_main
from filedock.client.client import Client
from filedock.client.pins import default_known_servers, fingerprint
from tests.support import HOST, ServerThread
from tests.support.credentials import tls_options


def _fingerprint_of(server_cert: Path) -> str:
    """The fingerprint of the first certificate of a PEM chain (the server's own)."""
    end = "-----END CERTIFICATE-----"
    leaf = server_cert.read_text().split(end)[0] + end + "\n"
    return fingerprint(ssl.PEM_cert_to_DER_cert(leaf))


@pytest.fixture
def two_servers(
    tmp_path: Path, make_server: Callable[..., ServerThread]
) -> tuple[tuple[ServerThread, str], tuple[ServerThread, str]]:
    """Two TLS servers, each with its own certificate (from two CAs nobody trusts)."""
    made = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        options = tls_options(trustme.CA(), folder)
        made.append((make_server(**options), _fingerprint_of(folder / "cert.pem")))
    return made[0], made[1]


def test_the_fingerprint_is_the_one_openssl_prints() -> None:
    der = b"certificate"
    digest = hashlib.sha256(der).hexdigest().upper()
    assert fingerprint(der).replace(":", "") == digest
    assert fingerprint(der)[2] == ":"


def test_first_use_pins_and_the_next_connection_passes(
    two_servers: tuple[tuple[ServerThread, str], ...], tmp_path: Path
) -> None:
    (server, expected), _ = two_servers
    known = tmp_path / "state" / "known_servers"
    with Client(HOST, server.port, known_servers=known, timeout=5) as client:
        assert client.certificate_pinned
        assert client.tls_fingerprint == expected
        assert client.ping() < 5.0
    assert known.read_text() == f"{HOST}:{server.port} {expected}\n"
    with Client(HOST, server.port, known_servers=known, timeout=5) as client:
        assert not client.certificate_pinned  # it was known: checked, not pinned again
        assert client.tls_fingerprint == expected
    assert known.read_text() == f"{HOST}:{server.port} {expected}\n"


def test_a_changed_certificate_is_refused_with_both_fingerprints_until_accepted(
    two_servers: tuple[tuple[ServerThread, str], ...], tmp_path: Path
) -> None:
    (_, old), (server, new) = two_servers
    known = tmp_path / "known_servers"
    # The address pinned with the other server's certificate: as if this one changed.
    known.write_text(f"# pins\n{HOST}:{server.port} {old}\n")
    with pytest.raises(filedock.CertificateChanged) as caught:
        Client(HOST, server.port, known_servers=known, timeout=5)
    message = str(caught.value)
    assert old in message
    assert new in message
    assert "--accept-new-certificate" in message
    assert f"delete line 2 of {known}" in message
    assert (caught.value.pinned, caught.value.presented) == (old, new)
    assert isinstance(caught.value, filedock.ConnectionLost)
    assert server.connected_count() == 0
    with Client(
        HOST, server.port, known_servers=known, accept_new_certificate=True, timeout=5
    ) as client:
        assert client.certificate_pinned
        assert client.ping() < 5.0
    assert known.read_text() == f"# pins\n{HOST}:{server.port} {new}\n"  # replaced, comment kept
    with Client(HOST, server.port, known_servers=known, timeout=5) as client:
        assert not client.certificate_pinned


def test_a_damaged_known_servers_file_is_refused(
    two_servers: tuple[tuple[ServerThread, str], ...], tmp_path: Path
) -> None:
    (server, _), _ = two_servers
    known = tmp_path / "known_servers"
    known.write_text("127.0.0.1:1 not-a-fingerprint\n")
    with pytest.raises(filedock.KnownServersError, match=r"known_servers, line 1: not 'host:port"):
        Client(HOST, server.port, known_servers=known, timeout=5)
    assert known.read_text() == "127.0.0.1:1 not-a-fingerprint\n"  # nothing pinned over it


def test_a_certificate_a_trusted_ca_signed_is_not_pinned(
    tls_server: ServerThread, ca_file: str, tmp_path: Path
) -> None:
    known = tmp_path / "known_servers"
    with Client(HOST, tls_server.port, tls=ca_file, known_servers=known, timeout=5) as client:
        assert not client.certificate_pinned
        assert client.tls_fingerprint is not None
    assert not known.exists()


def test_known_servers_needs_tls(server: ServerThread, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs tls"):
        Client(HOST, server.port, tls=False, known_servers=tmp_path / "k")


def test_the_command_line_pins_with_tls_alone_and_refuses_a_change(
    two_servers: tuple[tuple[ServerThread, str], ...], capsys: pytest.CaptureFixture[str]
) -> None:
    (server, expected), (other, new) = two_servers
    port = str(server.port)
    assert client_main(["--port", port, "--tls", "--timeout", "5", "ping"]) == 0
    first = capsys.readouterr()
    assert "PONG" in first.out
    assert f"first TLS connection to {HOST}:{port}" in first.err
    assert expected in first.err
    known = default_known_servers()  # under the test's own XDG_STATE_HOME
    assert known.read_text() == f"{HOST}:{port} {expected}\n"
    assert client_main(["--port", port, "--tls", "--timeout", "5", "ping"]) == 0
    assert "pinned" not in capsys.readouterr().err  # known: no word about it

    known.write_text(f"{HOST}:{other.port} {expected}\n")  # the other server "changed"
    argv = ["--port", str(other.port), "--tls", "--timeout", "5", "ping"]
    assert client_main(argv) == 3
    refused = capsys.readouterr().err
    assert "NOT the one pinned" in refused
    assert expected in refused
    assert new in refused
    assert "--accept-new-certificate" in refused
    assert client_main([*argv[:-1], "--accept-new-certificate", "ping"]) == 0
    accepted = capsys.readouterr()
    assert "PONG" in accepted.out
    assert "now the one pinned" in accepted.err
    assert known.read_text() == f"{HOST}:{other.port} {new}\n"


def test_accept_new_certificate_needs_tls_alone(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        client_main(["--accept-new-certificate", "ping"])
    assert exited.value.code == 2
    assert "--accept-new-certificate needs --tls" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        client_main(["--tls", "--insecure", "--accept-new-certificate", "ping"])
    assert "not --cafile or --insecure" in capsys.readouterr().err


def test_cafile_and_insecure_never_pin(
    tls_server: ServerThread, ca_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    port = str(tls_server.port)
    assert client_main(["--port", port, "--cafile", ca_file, "--timeout", "5", "ping"]) == 0
    assert client_main(["--port", port, "--insecure", "--timeout", "5", "ping"]) == 0
    assert "pinned" not in capsys.readouterr().err
    assert not default_known_servers().exists()
