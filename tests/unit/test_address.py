"""Where a server is, as people write it: HOST, HOST:PORT, [IPV6]:PORT, filedock:// URLs."""

from __future__ import annotations

import re

import pytest

from filedock.client.address import Address, parse_address, parse_url


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1", Address("127.0.0.1")),
        ("files.lan", Address("files.lan")),
        ("127.0.0.1:50001", Address("127.0.0.1", 50001)),
        ("[::1]:50001", Address("::1", 50001)),
        ("::1", Address("::1")),  # a bare IPv6 address has no port
        ("[::1]", Address("::1")),
        ("filedock://127.0.0.1:50001", Address("127.0.0.1", 50001, tls=False)),
        ("filedock://tok@127.0.0.1:50001", Address("127.0.0.1", 50001, "tok", tls=False)),
        ("filedock://tok@[::1]:7/", Address("::1", 7, "tok", tls=False)),
        ("filedocks://files.lan", Address("files.lan", tls=True)),
        ("FileDock://a%40b%3Ac@h:1", Address("h", 1, "a@b:c", tls=False)),
    ],
)
def test_addresses_people_write(text: str, address: Address) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "names no server host"),
        ("h:0", "'0' is not a port (1-65535)"),
        ("h:65536", "'65536' is not a port"),
        ("h:５", "is not a port"),
        ("h:", "'' is not a port"),
        (":50000", "names no server host"),
        ("[::1]50000", "after [::1] comes :PORT"),
        ("[127.0.0.1]:1", "brackets hold an IPv6 address"),
        ("tok@h:1", "a token goes in filedock://token@host:port"),
        ("http://h:1", "the scheme must be filedock:// or filedocks://, not http://"),
        ("filedock://h:1/sample.txt", "names a server only, not a path"),
        ("filedock://h:1?x=1", "names a server only"),
        ("filedock://@h:1", "the token before '@' is empty"),
        ("filedock://", "names no server host"),
    ],
)
def test_what_is_no_address_says_why(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_address(text)


def test_a_refused_url_never_shows_its_token() -> None:
    for url in ("filedock://s3cret@h:99999", "filedock://s3cret@h:1/x", "filedock://s3cret@"):
        with pytest.raises(ValueError, match="…@") as raised:
            parse_url(url)
        assert "s3cret" not in str(raised.value)


def test_parse_url_wants_a_url() -> None:
    with pytest.raises(ValueError, match="is not a filedock URL"):
        parse_url("127.0.0.1:50000")
