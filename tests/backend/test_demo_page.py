"""The demo page in a real browser (Debian's chromium driven by Playwright)."""

from __future__ import annotations

import shutil

import pytest
from realtime.app import App

from tests.backend.conftest import with_settings
from tests.backend.processes import free_port

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.async_api")


_HTTP_PORT, _WS_PORT = free_port(), free_port()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
@with_settings(
    http_port=_HTTP_PORT,
    ws_port=_WS_PORT,
    metrics_port=0,
    dev_tokens=True,
    allowed_origins=(f"http://127.0.0.1:{_HTTP_PORT}",),
)
async def test_two_people_chat_type_and_see_each_other(app: App) -> None:
    """Two browser pages connect, see each other online, type, chat, and see a leave."""
    url = f"http://127.0.0.1:{app.http.port}/"
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            alice, bob = await browser.new_page(), await browser.new_page()
            for page, name in ((alice, "alice"), (bob, "bob")):
                await page.goto(url)
                await page.get_by_test_id("name-input").fill(name)
                await page.get_by_test_id("connect-button").click()
                await playwright_api.expect(page.get_by_test_id("status")).to_have_text(
                    f"{name} in lobby"
                )
            online = alice.get_by_test_id("online-list").locator("li")
            await playwright_api.expect(online).to_have_text(["alice", "bob"])

            await bob.get_by_test_id("message-input").press_sequentially("hel")
            typing = alice.get_by_test_id("typing-indicator")
            await playwright_api.expect(typing).to_have_text("bob is typing…")

            await bob.get_by_test_id("message-input").fill("hello alice")
            await bob.get_by_test_id("send-button").click()
            messages = alice.get_by_test_id("message-list").locator('[data-testid="message"]')
            await playwright_api.expect(messages).to_have_count(1)
            await playwright_api.expect(messages.first).to_contain_text("hello alice")
            await playwright_api.expect(typing).to_have_text("")
            mine = bob.get_by_test_id("message-list").locator('[data-testid="message"]')
            await playwright_api.expect(mine).to_have_count(1)

            await bob.close()
            await playwright_api.expect(online).to_have_text(["alice"])
        finally:
            await browser.close()
