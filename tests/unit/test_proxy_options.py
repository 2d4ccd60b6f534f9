"""--proxy-protocol and --proxy-from: options, environment twins, and who is trusted."""

from __future__ import annotations

import pytest

from filedock.cli.server import server_main, server_parser
from filedock.server.config import DEFAULT_PROXY_FROM, ConfigError, ServerConfig
from filedock.server.proxied import is_trusted, trusted_networks


def test_the_defaults_trust_this_machine_only() -> None:
    args = server_parser().parse_args([])
    assert args.proxy_protocol is False
    assert args.proxy_from == DEFAULT_PROXY_FROM == ("127.0.0.0/8", "::1")


def test_the_options_and_their_environment_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    args = server_parser().parse_args(["--proxy-protocol", "--proxy-from", "10.0.0.0/8, ::1,"])
    assert (args.proxy_protocol, args.proxy_from) == (True, ("10.0.0.0/8", "::1"))
    monkeypatch.setenv("FILEDOCK_SERVER_PROXY_PROTOCOL", "1")
    monkeypatch.setenv("FILEDOCK_SERVER_PROXY_FROM", "192.0.2.5")
    args = server_parser().parse_args([])
    assert (args.proxy_protocol, args.proxy_from) == (True, ("192.0.2.5",))


@pytest.mark.parametrize("value", [(), ("nonsense",), ("10.0.0.0/33",), ("127.0.0.1", "")])
def test_what_is_no_address_or_network_is_refused(value: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError, match="proxy_from must be IP addresses or networks"):
        ServerConfig(proxy_from=value)


def test_the_command_line_says_which_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        server_main(["--proxy-from", "10.0.0.1,example.org"])
    assert stopped.value.code == 2
    assert "--proxy-from must be IP addresses or networks (CIDR), comma-separated, not " in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("host", "trusted"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # an IPv4 peer of a dual-stack listener
        ("192.0.2.1", False),
        ("::2", False),
        ("", False),  # a Unix socket's peer
    ],
)
def test_the_default_trusts_loopback(host: str, trusted: bool) -> None:
    assert is_trusted(host, trusted_networks(DEFAULT_PROXY_FROM)) is trusted


def test_an_ipv6_network_never_matches_an_ipv4_peer() -> None:
    networks = trusted_networks(("::/0",))
    assert not is_trusted("10.0.0.1", networks)
    assert is_trusted("2001:db8::1", networks)
    assert is_trusted("fe80::1%eth0", trusted_networks(("fe80::/10",)))
