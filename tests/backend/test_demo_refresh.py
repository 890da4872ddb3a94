"""The demo page renews its token before ``exp`` (the ``refresh`` frame), in a real browser."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from realtime.app import App
from realtime.auth import TokenVerifier

from tests.backend.conftest import SIGNING_KEY, with_settings
from tests.backend.processes import free_port

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.async_api")

_HTTP_PORT, _WS_PORT = free_port(), free_port()
TTL = 4.0


class _ShortTokens(TokenVerifier):
    """Dev tokens that live ``TTL`` seconds, checked without clock-skew leeway."""

    def issue(self, sub: str, name: str, *, ttl: float = TTL) -> str:
        return super().issue(sub, name, ttl=ttl)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
@with_settings(
    http_port=_HTTP_PORT,
    ws_port=_WS_PORT,
    dev_tokens=True,
    allowed_origins=(f"http://127.0.0.1:{_HTTP_PORT}",),
)
async def test_page_refreshes_its_token_and_stays_connected(app: App) -> None:
    """With 4 s tokens the page is still connected (and chats) after 3 token lifetimes:
    it sent refresh with a fresh /dev/token each time; without it the server closes 4001."""
    app.verifier = app.ws.verifier = _ShortTokens(SIGNING_KEY, leeway=0.0)
    refreshes = app.metrics.messages_in
    url = f"http://127.0.0.1:{app.http.port}/"
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            await page.goto(url)
            await page.get_by_test_id("name-input").fill("alice")
            await page.get_by_test_id("connect-button").click()
            status = page.get_by_test_id("status")
            await playwright_api.expect(status).to_have_text("alice in lobby")
            before = refreshes._value.get()
            await asyncio.sleep(3 * TTL)
            await playwright_api.expect(status).to_have_text("alice in lobby")
            assert refreshes._value.get() - before >= 3  # the refresh frames
            await page.get_by_test_id("message-input").fill("still here")
            await page.get_by_test_id("send-button").click()
            messages = page.get_by_test_id("message-list").locator('[data-testid="message"]')
            await playwright_api.expect(messages).to_have_count(1)
        finally:
            await browser.close()
    assert 'realtime_closes_total{code="4001"}' not in app.metrics.render().decode()
