"""Speech: transcription of call-center audio (Whisper) with intents and entities."""
