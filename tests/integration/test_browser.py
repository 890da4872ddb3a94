"""The demo page in a real browser, served through the TLS edge: two users chat in one room

Debian's chromium driven by Playwright loads the page from the edge's stand-in of port 443
(``mode http``, TLS with the development certificate), and the page opens its WebSocket to the
edge's stand-in of port 8081 (TLS, ALPN ``http/1.1``, then ``mode tcp``), as a visitor of the
deployed app would. The certificate is trusted by its key hash, not by ignoring errors.
"""

from __future__ import annotations

import re
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.integration.edge_fixtures import (
    ARTIFACTS,
    Edge,
    chromium,
    dev_fly_config,
    running_edge,
)

pytestmark = [pytest.mark.integration, pytest.mark.browser]

_WAIT_MS = 10_000


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser-tls")


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, tls_dir: Path) -> Iterator[Edge]:
    workdir = tmp_path_factory.mktemp("browser-edge")
    with running_edge(workdir, fly=dev_fly_config(), tls_dir=tls_dir) as running:
        yield running


@pytest.fixture(scope="module")
def browser(edge: Edge) -> Iterator[Browser]:
    expect.set_options(timeout=_WAIT_MS)
    with chromium(edge) as running:
        yield running


def _join(browser: Browser, edge: Edge, name: str, room: str) -> Page:
    """A fresh browser context (its own user) on the demo page, joined to ``room``."""
    page = browser.new_context(viewport={"width": 900, "height": 640}).new_page()
    page.set_default_timeout(_WAIT_MS)
    # networkidle: /config.json has loaded, so the page asks /dev/token for its token
    page.goto(edge.https_url, wait_until="networkidle")
    # DEV_TOKENS=1: the page fetches its token, so it hides the token field
    expect(page.get_by_test_id("token-input")).to_be_hidden()
    page.get_by_test_id("name-input").fill(name)
    page.get_by_test_id("room-input").fill(room)
    page.get_by_test_id("connect-button").click()
    expect(page.get_by_test_id("status")).to_have_text(f"{name} in {room}")
    return page


def _say(page: Page, text: str) -> None:
    page.get_by_test_id("message-input").fill(text)
    page.get_by_test_id("send-button").click()


def _said(page: Page, part: str) -> Locator:
    """One part (``who`` or ``body``) of every chat line on ``page``."""
    return page.get_by_test_id("message-list").locator(f"[data-testid=message] .{part}")


def test_two_users_chat_type_and_see_each_other_through_the_edge(
    browser: Browser, edge: Edge
) -> None:
    """Two pages in one room see each other online, typing, chatting, and going offline."""
    room = f"browser-{uuid.uuid4().hex[:8]}"
    alice = _join(browser, edge, "alice", room)
    bob = _join(browser, edge, "bob", room)
    try:
        expect(alice.get_by_test_id("online-list").locator("li")).to_have_text(["alice", "bob"])
        expect(bob.get_by_test_id("online-list").locator("li")).to_have_text(["alice", "bob"])

        alice.get_by_test_id("message-input").press_sequentially("hel")
        expect(bob.get_by_test_id("typing-indicator")).to_have_text("alice is typing…")
        alice.get_by_test_id("message-input").fill("")
        _say(alice, "hello bob, over wss through the edge")
        expect(_said(bob, "body")).to_have_text(["hello bob, over wss through the edge"])
        expect(_said(bob, "who")).to_have_text(["alice"])
        expect(bob.get_by_test_id("typing-indicator")).to_have_text("")

        bob.get_by_test_id("message-input").press_sequentially("hi")
        expect(alice.get_by_test_id("typing-indicator")).to_have_text("bob is typing…")
        _say(bob, "hi alice")
        expect(_said(alice, "body")).to_have_text(
            ["hello bob, over wss through the edge", "hi alice"]
        )
        expect(_said(alice, "who")).to_have_text(["alice", "bob"])
        expect(alice.get_by_test_id("typing-indicator")).to_have_text("")
        ARTIFACTS.mkdir(exist_ok=True)
        alice.screenshot(path=str(ARTIFACTS / "browser-chat-alice.png"))
        bob.screenshot(path=str(ARTIFACTS / "browser-chat-bob.png"))

        bob.context.close()
        expect(alice.get_by_test_id("online-list").locator("li")).to_have_text(["alice"])
        alice.screenshot(path=str(ARTIFACTS / "browser-chat-bob-left.png"))
    finally:
        alice.context.close()
        if bob.context.pages:
            bob.context.close()
    # both pages' WebSockets went through the edge's WebSocket port, over HTTP/1.1
    assert edge.alpn_log(8081) == ["http/1.1", "http/1.1"]


def test_the_page_is_refused_when_its_origin_is_not_allowed(
    tmp_path: Path, tls_dir: Path, browser: Browser
) -> None:
    """Without ALLOWED_ORIGINS (as `make up` runs today) the page's handshake gets a 403."""
    not_allowed = {"ALLOWED_ORIGINS": ""}
    with running_edge(
        tmp_path, fly=dev_fly_config(), backend_env=not_allowed, tls_dir=tls_dir
    ) as edge:
        page = browser.new_page()
        page.goto(edge.https_url, wait_until="networkidle")
        page.get_by_test_id("name-input").fill("alice")
        page.get_by_test_id("connect-button").click()
        expect(page.get_by_test_id("status")).to_have_text(
            re.compile(r"reconnecting in \d+ s \(1006\)"), timeout=_WAIT_MS
        )
        metrics = f"http://127.0.0.1:{edge.backend_metrics_port}/metrics"
        with urllib.request.urlopen(metrics, timeout=5) as response:
            text = response.read().decode()
        assert re.search(r'realtime_handshakes_refused_total\{reason="origin"\} [1-9]', text)
