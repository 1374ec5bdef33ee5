"""percept: a perception suite for sales teams (speech, vision, nlp, leads over gRPC)."""

__version__ = "0.1.0"
