"""Shared runtime of every percept service: settings, server bootstrap, model store."""
