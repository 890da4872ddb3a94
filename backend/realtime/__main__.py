"""``python -m realtime``: run one instance until SIGTERM/SIGINT (exit 0 after the drain).

Exit codes: 0 after a graceful drain, 1 when the service cannot start, 2 for bad settings.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import Callable

from realtime.app import App
from realtime.broker import BrokerError
from realtime.logs import configure, get_logger
from realtime.settings import Settings, SettingsError

logger = get_logger("realtime")

GC_THRESHOLDS = (10_000, 10, 10)
"""The cyclic garbage collector's thresholds (Python's default: 700, 10, 10). A full
collection stops the event loop for 40-58 ms with 1,000 connections (websockets' objects per
connection), and under fan-out load the default ran one every 2 s: that was the p99 tail.
With a young generation of 10,000 net allocations, full collections come about ten times
less often (the 25 % rule that bounds how much old garbage may wait is unchanged); short
sessions' garbage is still collected young. docs/PERFORMANCE.md, "Full collections"."""


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
    gc.set_threshold(*GC_THRESHOLDS)
    logger.info("garbage collector thresholds", thresholds=list(gc.get_threshold()))
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
