"""The kinds of data a transcript can be redacted of (light: settings check them)."""

from __future__ import annotations

from collections.abc import Iterable

KINDS = ("card", "national_id", "iban", "phone", "email", "name")
# what PCI DSS and national-id rules forbid keeping; contacts and names are opt-in
DEFAULT_KINDS = ("card", "national_id", "iban")


class RedactionKindError(ValueError):
    """A redaction kind nobody knows; the message lists the ones there are."""


def parse_kinds(names: Iterable[str], *, field: str = "redact") -> frozenset[str]:
    """The kinds named; "none" alone means nothing is redacted."""
    kinds = {n.strip().lower() for n in names if n.strip()}
    if kinds == {"none"}:
        return frozenset()
    unknown = sorted(kinds - set(KINDS))
    if unknown:
        raise RedactionKindError(
            f"{field}: {', '.join(repr(u) for u in unknown)} is not a redaction kind "
            f"({', '.join(KINDS)}, or 'none' alone)"
        )
    return frozenset(kinds)
