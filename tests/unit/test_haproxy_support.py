"""tests/support/haproxy.py: a missing haproxy skips a test, or fails it under CI."""

from __future__ import annotations

import pytest

from tests.support import haproxy, tools


@pytest.fixture
def no_haproxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools.shutil, "which", lambda _: None)
    monkeypatch.setattr(tools.os, "access", lambda *_: False)


@pytest.mark.usefixtures("no_haproxy")
def test_without_haproxy_the_test_is_skipped_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install haproxy"):
        haproxy.haproxy_binary()


@pytest.mark.usefixtures("no_haproxy")
def test_without_haproxy_under_ci_the_test_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="CI must have it"):
        haproxy.haproxy_binary()


def test_the_configuration_sends_the_header_asked_for() -> None:
    config = haproxy.haproxy_config(5000, [("127.0.0.1", 5001), ("127.0.0.1", 5002)])
    assert "    server node1 127.0.0.1:5001 send-proxy-v2\n" in config
    assert "    server node2 127.0.0.1:5002 send-proxy-v2\n" in config
    assert "    mode tcp\n" in config
    plain = haproxy.haproxy_config(5000, [("127.0.0.1", 5001)], send_proxy="")
    assert "    server node1 127.0.0.1:5001\n" in plain
    with pytest.raises(ValueError, match="send_proxy"):
        haproxy.haproxy_config(5000, [], send_proxy="send-proxy-v3")
