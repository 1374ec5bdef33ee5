"""Scripted visitor chats that qualify a lead, shared by the chat tests and bench/nlp.py."""

from __future__ import annotations

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
SPANISH_CHAT = [
    "¿Cuánto cuesta el portátil?",
    "Necesitamos diez portátiles.",
    "Los necesitamos el mes que viene.",
    "Tenemos un presupuesto de 15000 euros.",
    "Soy la directora de compras y yo tomo la decisión.",
    "Me llamo Ana García.",
    "Mi correo es ana.garcia@empresa.example y mi teléfono es +34 612 34 56 78",
]
