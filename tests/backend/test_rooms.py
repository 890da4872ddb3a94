"""Room logic without sockets: history, idempotency, presence, typing, rate limiting."""

from __future__ import annotations

from realtime.ids import ClientMessageId, ConnId, Epoch, RoomName, User, UserId
from realtime.rooms import (
    IDEMPOTENCY_FACTOR,
    PresenceTable,
    RoomHistory,
    TokenBucket,
    TypingTracker,
)

ROOM = RoomName("lobby")
ALICE = User(UserId("alice"), "alice")
BOB = User(UserId("bob"), "bob")


def _append(history: RoomHistory, client_id: str, user: UserId = ALICE.id) -> tuple[int, str, bool]:
    return history.append(user, ClientMessageId(client_id), lambda offset: f"frame {offset}")


def test_history_assigns_offsets_and_deduplicates() -> None:
    """Offsets start at 1; a seen (user, id) returns its first offset and frame."""
    history = RoomHistory(10, Epoch("e"))
    assert _append(history, "a") == (1, "frame 1", False)
    assert _append(history, "b") == (2, "frame 2", False)
    assert _append(history, "a") == (1, "frame 1", True)
    assert _append(history, "a", BOB.id) == (3, "frame 3", False)
    assert history.last_offset == 3


def test_history_since_is_exact_within_retention() -> None:
    """since() returns the frames after the offset, or everything and False on a gap."""
    history = RoomHistory(3, Epoch("e"))
    for i in range(5):
        _append(history, str(i))
    assert history.first_offset == 3
    assert history.since(2, Epoch("e")) == (["frame 3", "frame 4", "frame 5"], True)
    assert history.since(4, Epoch("e")) == (["frame 5"], True)
    assert history.since(5, Epoch("e")) == ([], True)
    assert history.since(1, Epoch("e")) == (["frame 3", "frame 4", "frame 5"], False)
    assert history.since(9, Epoch("e"))[1] is False
    assert history.since(4, Epoch("other"))[1] is False
    assert history.since(0, None)[1] is False


def test_empty_history_recovers_from_zero() -> None:
    """A new room recovers offset 0 of its own epoch with no frames."""
    assert RoomHistory(3, Epoch("e")).since(0, Epoch("e")) == ([], True)


def test_idempotency_window_is_bounded() -> None:
    """Client ids older than the window are forgotten: a retry becomes a new message."""
    history = RoomHistory(2, Epoch("e"))
    for i in range(2 * IDEMPOTENCY_FACTOR + 1):
        _append(history, str(i))
    assert _append(history, "0")[2] is False
    assert _append(history, str(2 * IDEMPOTENCY_FACTOR))[2] is True


def test_presence_transitions_once_per_user() -> None:
    """Online on the first connection, offline on the last; unknown leaves change nothing."""
    table = PresenceTable()
    assert table.join(ROOM, ALICE, ConnId("1"))
    assert not table.join(ROOM, ALICE, ConnId("2"))
    assert not table.leave(ROOM, ALICE, ConnId("1"))
    assert not table.leave(ROOM, ALICE, ConnId("9"))
    assert not table.leave(RoomName("other"), ALICE, ConnId("2"))
    assert table.snapshot(ROOM) == [ALICE]
    assert table.leave(ROOM, ALICE, ConnId("2"))
    assert table.snapshot(ROOM) == []


def test_typing_throttle_and_refresh() -> None:
    """One start per throttle window is forwarded; every start refreshes the expiry."""
    typing = TypingTracker(ttl=6.0, throttle=1.0)
    assert typing.start(ROOM, ALICE, 0.0)
    assert not typing.start(ROOM, ALICE, 0.5)
    assert typing.start(ROOM, BOB, 0.5)
    assert typing.start(ROOM, ALICE, 1.0)
    assert typing.expired(6.5) == [(ROOM, BOB)]
    assert typing.expired(7.0) == [(ROOM, ALICE)]


def test_typing_stop_only_after_a_forwarded_start() -> None:
    """stop/clear forward once after a start; a start right after a stop waits the window."""
    typing = TypingTracker(ttl=6.0, throttle=1.0)
    assert not typing.stop(ROOM, ALICE)
    assert typing.start(ROOM, ALICE, 0.0)
    assert typing.clear(ROOM, ALICE)
    assert not typing.stop(ROOM, ALICE)
    assert not typing.start(ROOM, ALICE, 0.2)
    assert typing.start(ROOM, ALICE, 1.2)


def test_typing_forgets_idle_and_offline_users() -> None:
    """Stopped states vanish after the throttle window; forget drops a state silently."""
    typing = TypingTracker(ttl=6.0, throttle=1.0)
    typing.start(ROOM, ALICE, 0.0)
    typing.stop(ROOM, ALICE)
    typing.start(ROOM, BOB, 0.0)
    typing.forget(ROOM, BOB)
    assert typing.expired(2.0) == []
    assert len(typing) == 0


def test_token_bucket_allows_burst_then_rate() -> None:
    """A full bucket allows ``burst`` frames at once, then ``rate`` per second."""
    bucket = TokenBucket(2.0, 3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5)
    assert not bucket.take(0.5)
    assert [bucket.take(10.0) for _ in range(4)] == [True, True, True, False]
