"""The web console: a small gateway serving the leads board, lead and camera pages, and the
embeddable chat widget, over the suite's gRPC services."""
