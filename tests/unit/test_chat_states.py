"""What a watch of every chat remembers of each: bounded, and right about changes."""

from __future__ import annotations

from percept.nlp.chat_messages import ChatStates

OPEN, CLAIMED = ("assistant", ""), ("claimed", "ana")


def test_a_chat_is_told_of_when_first_heard_and_when_it_changes() -> None:
    states = ChatStates()
    assert states.changed("a", OPEN)
    assert not states.changed("a", OPEN)
    assert states.changed("a", CLAIMED)
    assert not states.changed("a", CLAIMED)


def test_the_chats_least_recently_heard_of_are_forgotten_past_the_bound() -> None:
    states = ChatStates(kept=3)
    for chat in ("a", "b", "c"):
        states.changed(chat, OPEN)
    states.changed("a", OPEN)  # heard of again: now the most recent
    states.changed("d", OPEN)  # "b" goes
    assert len(states) == 3
    assert not states.changed("a", OPEN)
    assert states.changed("b", OPEN)  # forgotten: told of again (one extra event)
    for n in range(10_000):
        states.changed(f"chat-{n}", OPEN)
    assert len(states) == 3
