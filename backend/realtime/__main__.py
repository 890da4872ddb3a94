"""``python -m realtime``: run one instance until SIGTERM/SIGINT (exit 0 after the drain).

Exit codes: 0 after a graceful drain, 1 when the service cannot start, 2 for bad settings.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable

from realtime.app import App
from realtime.broker import BrokerError
from realtime.logs import configure, get_logger
from realtime.settings import Settings, SettingsError

logger = get_logger("realtime")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # noqa: PLC0415 optional: not built for every platform
    except ImportError:  # pragma: no cover - uvloop is not built for every platform
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main() -> int:
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"realtime: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level, settings.log_format)
    if settings.dev_tokens:
        logger.warning("DEV_TOKENS=1: POST /dev/token issues tokens to anyone, never in production")
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        try:
            app = runner.run(_build(settings))
        except BrokerError as exc:
            logger.error("cannot start", error=str(exc))
            return 2
        try:
            runner.run(app.run())
        except (OSError, BrokerError) as exc:
            logger.error("cannot start", error=str(exc))
            return 1
    return 0


async def _build(settings: Settings) -> App:
    return App(settings)


if __name__ == "__main__":
    sys.exit(main())
