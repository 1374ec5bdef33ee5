"""BCP-47 language tags as the company writes them in knowledge and prompts files.

`langcodes` knows the IANA registry: 'es', 'es-MX', 'pt-BR' and 'zh-Hant' pass,
'spanish' and 'xx' do not. Tags are kept in their standard case ('es-MX').
"""

from __future__ import annotations

import langcodes


class LanguageTagError(ValueError):
    pass


def check_tag(tag: str) -> str:
    """The tag in standard form, or LanguageTagError saying why it is not BCP-47."""
    text = tag.strip() if isinstance(tag, str) else ""
    if not text:
        raise LanguageTagError("an empty language tag")
    if "_" in text:
        raise LanguageTagError(f"{tag!r} is not a BCP-47 language tag (subtags take '-', not '_')")
    if not langcodes.tag_is_valid(text):
        raise LanguageTagError(
            f"{tag!r} is not a BCP-47 language tag (e.g. 'en', 'es', 'pt-BR', 'zh-Hant')"
        )
    return str(langcodes.standardize_tag(text))


def primary(tag: str) -> str:
    """The language subtag: 'es' for 'es-MX'."""
    return tag.split("-", 1)[0].lower()
