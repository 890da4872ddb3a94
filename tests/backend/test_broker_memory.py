from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import pytest
from realtime.broker import Broker, BrokerError, MemoryBroker, OnEvent, create_broker
from realtime.ids import ClientMessageId, RoomName
from realtime.settings import Settings

from tests.backend.broker_contract import ALICE, BrokerContract, BrokerFactory, Inbox


@pytest.fixture
async def broker_factory() -> AsyncIterator[BrokerFactory]:
    made: list[Broker] = []

    async def factory(on_event: OnEvent) -> Broker:
        broker = MemoryBroker(on_event, history_size=500)
        await broker.start()
        made.append(broker)
        return broker

    yield factory
    for broker in made:
        await broker.close()


class TestMemoryBroker(BrokerContract):
    pass


def test_factory_returns_memory_broker_without_redis_url() -> None:
    """Without REDIS_URL the factory builds the in-memory broker."""
    broker = create_broker(Settings(dev_tokens=True), Inbox())
    assert isinstance(broker, MemoryBroker)


def test_factory_names_missing_redis_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    """With REDIS_URL set and no importable redis module, the error says so."""
    monkeypatch.setitem(sys.modules, "realtime.broker.redis", None)
    with pytest.raises(BrokerError, match="REDIS_URL is set but the redis broker"):
        create_broker(Settings(dev_tokens=True, redis_url="redis://127.0.0.1:6379"), Inbox())


async def test_idle_rooms_are_dropped_oldest_first() -> None:
    """Beyond idle_rooms unsubscribed rooms, the oldest history goes and its epoch changes."""
    broker = MemoryBroker(Inbox(), history_size=10, idle_rooms=2)
    await broker.start()
    first = await broker.append(RoomName("r0"), ALICE, ClientMessageId("m"), "x")
    for i in range(1, 4):
        await broker.append(RoomName(f"r{i}"), ALICE, ClientMessageId("m"), "x")
    epoch, offset = await broker.last(RoomName("r0"))
    assert (epoch == first.epoch, offset) == (False, 0)
