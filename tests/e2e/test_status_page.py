"""The status page in a real headless browser: Debian's chromium, driven by Selenium
through chromium-driver (./scripts/test installs both when they are missing)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import LineConn, ServerThread, wait_until
from tests.support.web import SlowReader, http_port

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium: pip install -e '.[dev]'")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

BIG = 64 * 1024 * 1024
WIDE = (1000, 1100)


def _chromium() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    reason = "chromium and chromium-driver are not installed (./scripts/test installs them)"
    if os.environ.get("CI"):
        pytest.fail(reason)  # CI runs ./scripts/test, which installs them: never skipped there
    pytest.skip(reason)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    chromium, driver = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root, in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--window-size={WIDE[0]},{WIDE[1]}",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield session
    finally:
        session.quit()


def errors(browser: WebDriver) -> list[dict[str, Any]]:
    """The console's errors since the last call (a page error, a failed load, a CSP refusal)."""
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def text_of(browser: WebDriver, element_id: str) -> str:
    text: str = browser.find_element(By.ID, element_id).text
    return text


def progress(browser: WebDriver) -> tuple[float, float] | None:
    """The first progress bar's value and max, or None while there is none."""
    found = browser.execute_script(
        "const bar = document.querySelector('#transfers progress');"
        "return bar ? [bar.value, bar.max] : null;"
    )
    return None if found is None else (float(found[0]), float(found[1]))


@pytest.fixture
def watched(repo: Path, make_server: Callable[..., ServerThread]) -> ServerThread:
    with open(repo / "big.bin", "wb") as big:
        big.truncate(BIG)
    return make_server(http="127.0.0.1:0")


def test_the_page_shows_clients_and_a_moving_transfer(
    browser: WebDriver, watched: ServerThread, tmp_path: Path
) -> None:
    browser.get(f"http://127.0.0.1:{http_port(watched)}/")
    wait_until(lambda: browser.find_element(By.ID, "main").is_displayed(), timeout=10)
    assert "No client connected." in text_of(browser, "clients")

    with LineConn(watched.port) as conn:
        name = conn.greet()
        wait_until(lambda: name in text_of(browser, "clients"), timeout=1.0)
        assert "idle" in text_of(browser, "clients")

        with SlowReader(watched.port, "big.bin") as reader:
            wait_until(lambda: (progress(browser) or (0, 0))[0] > 0, timeout=10)
            first = progress(browser)
            assert first is not None
            assert first[1] == BIG
            wait_until(lambda: (progress(browser) or (0, 0))[0] > first[0], timeout=10)
            transfers = text_of(browser, "transfers")
            assert f"{reader.name}: get big.bin" in transfers
            assert "of 64.0 MiB" in transfers
            assert "get big.bin (" in text_of(browser, "clients")  # the doing column: a share
            screenshot = tmp_path / "status-page.png"
            assert browser.save_screenshot(str(screenshot))
            assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    assert errors(browser) == []


def test_the_page_fits_a_phone(browser: WebDriver, watched: ServerThread) -> None:
    browser.set_window_size(390, 844)
    browser.get(f"http://127.0.0.1:{http_port(watched)}/")
    wait_until(lambda: browser.find_element(By.ID, "main").is_displayed(), timeout=10)
    with LineConn(watched.port) as conn:
        name = conn.greet()
        wait_until(lambda: name in text_of(browser, "clients"), timeout=1.0)
        # Wide tables scroll inside their own box; the page itself does not scroll sideways.
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth;"
        )
        assert overflow <= 0
    assert errors(browser) == []


def test_with_a_token_file_the_page_asks_for_a_token(
    browser: WebDriver, tmp_path: Path, make_server: Callable[..., ServerThread]
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("alpha-123\n")
    server = make_server(http="127.0.0.1:0", token_file=str(tokens))
    browser.get(f"http://127.0.0.1:{http_port(server)}/")
    login = browser.find_element(By.ID, "login")
    wait_until(login.is_displayed)
    assert not browser.find_element(By.ID, "main").is_displayed()

    def log_in(token: str) -> None:
        field = browser.find_element(By.ID, "token")
        field.send_keys(token)
        field.submit()

    log_in("wrong")
    wait_until(lambda: "not accepted" in text_of(browser, "login-error"))
    refused = errors(browser)  # the page itself (401 before a token) and the wrong token's read
    assert refused, "the 401 answers are seen"
    assert all("401" in entry["message"] for entry in refused), refused

    log_in("alpha-123")
    wait_until(lambda: browser.find_element(By.ID, "main").is_displayed(), timeout=10)
    stored = browser.execute_script("return sessionStorage.getItem('filedock.token');")
    assert stored == "alpha-123"
    browser.refresh()  # the token is kept for the tab: no form again
    wait_until(lambda: browser.find_element(By.ID, "main").is_displayed(), timeout=10)
    with LineConn(server.port) as conn:
        conn.read_line()
        assert conn.request("HELLO token=alpha-123").startswith("WELCOME ")
        wait_until(lambda: "Client01" in text_of(browser, "clients"), timeout=1.0)
    assert all("401" in entry["message"] for entry in errors(browser))
