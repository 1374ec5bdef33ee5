"""The `percept` command line: serve services, check health, manage models."""

from __future__ import annotations

from percept.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
