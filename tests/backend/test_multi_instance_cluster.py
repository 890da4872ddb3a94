"""The multi-instance tests on a real 3+3 Redis Cluster: the same tests as
test_multi_instance.py (two real backend processes), with ``REDIS_CLUSTER=1``.

The single-Redis restart test has no cluster counterpart here: a master's failure is
test_broker_redis_cluster.py's failover test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.backend.redis_cluster import RedisClusterNodes, running_cluster
from tests.backend.test_multi_instance import (
    Cluster,
    instances_on,
    test_client_recovers_missed_messages_on_the_other_instance,
    test_messages_typing_and_presence_cross_instances,
    test_sigkill_instance_users_leave_presence_within_30s,
    test_sigterm_loses_no_acknowledged_message,
    test_slow_consumer_does_not_delay_others,
)

__all__ = [
    "test_client_recovers_missed_messages_on_the_other_instance",
    "test_messages_typing_and_presence_cross_instances",
    "test_sigkill_instance_users_leave_presence_within_30s",
    "test_sigterm_loses_no_acknowledged_message",
    "test_slow_consumer_does_not_delay_others",
]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    with running_cluster() as nodes:
        yield nodes


@pytest.fixture
async def cluster(redis_cluster: RedisClusterNodes, tmp_path: Path) -> AsyncIterator[Cluster]:
    """``await cluster(2, ...)``: started, ready instances A, B, ... on the Redis Cluster."""
    redis_cluster.wait_ok()
    redis_cluster.flush()
    async with instances_on(redis_cluster.url, tmp_path, REDIS_CLUSTER="1") as factory:
        yield factory
