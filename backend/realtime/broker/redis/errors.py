"""What redis-py raises when Redis cannot serve a command (one tuple for every except)."""

from __future__ import annotations

from redis.exceptions import RedisClusterException, RedisError

from realtime.broker.base import BrokerError

REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)
"""redis-py's errors, its cluster client's (not RedisError subclasses: e.g. "Cluster mode is
not enabled on this node", or no node for a slot), and socket errors."""

UNAVAILABLE: tuple[type[Exception], ...] = (*REDIS_ERRORS, TimeoutError)
"""Those and a timeout of our own (``asyncio.timeout``)."""

LOST: tuple[type[Exception], ...] = (*UNAVAILABLE, BrokerError)
"""What ends a subscription connection's read loop and makes it reconnect."""
