"""The nlp service: language detection, translation and the chat assistant."""
