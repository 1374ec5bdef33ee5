"""YAML data files whose mistakes are reported with their line.

The companies' rule files (call categories, follow-ups) are parsed with each
mapping's line kept under `__line__`, so a validation error can name the line,
then stripped before validation."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

LINE = "__line__"


class LineLoader(yaml.SafeLoader):
    """Keeps each mapping's line, so an error can say where it is."""


def _mapping_with_line(loader: LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping: dict[Any, Any] = loader.construct_mapping(node, deep=True)
    mapping[LINE] = node.start_mark.line + 1
    return mapping


LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def load_with_lines(text: str) -> Any:
    """The document, each mapping with its line; raises yaml.YAMLError."""
    return yaml.load(text, Loader=LineLoader)


def line_of(value: Any) -> Any:
    return value.get(LINE, "?") if isinstance(value, dict) else "?"


def strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_lines(v) for k, v in value.items() if k != LINE}
    if isinstance(value, list):
        return [strip_lines(v) for v in value]
    return value


def first_error(exc: ValidationError) -> str:
    """'field.sub: what is wrong' of pydantic's first error."""
    first = exc.errors()[0]
    at = ".".join(str(p) for p in first["loc"]) or "entry"
    return f"{at}: {str(first['msg']).removeprefix('Value error, ')}"
