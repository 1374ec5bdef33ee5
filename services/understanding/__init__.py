"""What a caller or visitor wants: intents and entities, shared by speech and nlp."""
