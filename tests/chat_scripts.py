"""Scripted visitor chats that qualify a lead, shared by the chat tests, bench/nlp.py and
`percept demo`."""

from __future__ import annotations

from percept.demo.story import CHAT

ENGLISH_CHAT = [
    "Hi",
    "How much is the laptop?",
    "We need ten laptops for our new office.",
    "By next month",
    "Around 15000 dollars",
    "I'm the IT manager and I make the decision",
    "My name is John Miller",
    "john.miller@acme.example or +1 415 555 0134",
]
# The demo's own chat (percept.demo.story.CHAT): the tests check what newcomers see.
SPANISH_CHAT = list(CHAT)
