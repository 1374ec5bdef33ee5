"""The assistant's own words per language: every prompt there, placeholders the English
fills, file names that are language tags; errors name the file and the prompt."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from percept.nlp.prompts import NAMES, PromptsError, load_prompts

ENGLISH = load_prompts().english


def write_folder(tmp_path: Path, files: dict[str, dict[str, object]]) -> Path:
    for name, data in files.items():
        (tmp_path / name).write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return tmp_path


def english_file() -> dict[str, object]:
    return {"prompts": dict(ENGLISH.texts), "lead_ins": list(ENGLISH.lead_ins)}


def test_the_packaged_languages_have_every_prompt_written_natively() -> None:
    book = load_prompts()
    assert book.languages() == ["en", "es", "fr"]
    for language in ("es", "fr"):
        prompts = book.get(language)
        assert prompts is not None and set(prompts.texts) == set(NAMES)
        # written for the language, not copied from the English
        assert not set(prompts.texts.values()) & set(ENGLISH.texts.values())
    spanish = book.get("es")
    assert spanish is not None
    assert spanish.say("salesperson_joined", salesperson="Marta").startswith("Marta")
    assert book.get("es-MX") is spanish  # a regional tag falls back to its language
    assert book.get("de") is None  # no German: machine translation of the English


def test_lead_ins_come_off_the_visitors_words() -> None:
    spanish = load_prompts().get("es")
    assert spanish is not None
    assert spanish.without_lead_in("Soy la directora de compras.") == "directora de compras"
    assert spanish.without_lead_in("¡Somos una empresa de diseño!") == "una empresa de diseño"
    assert ENGLISH.without_lead_in("I am the IT manager") == "the IT manager"


def test_a_prompts_file_missing_a_prompt_is_refused_naming_it(tmp_path: Path) -> None:
    spanish: dict[str, object] = {"prompts": {n: f"texto {n}" for n in NAMES if n != "ask_budget"}}
    folder = write_folder(tmp_path, {"en.yaml": english_file(), "es.yaml": spanish})
    with pytest.raises(PromptsError, match=r"es\.yaml: prompt 'ask_budget' is missing$"):
        load_prompts(folder)


def test_a_prompt_with_a_placeholder_the_english_does_not_fill_is_refused(
    tmp_path: Path,
) -> None:
    texts = {n: f"texto {n}" for n in NAMES} | {"thanks": "Gracias, {nombre}."}
    folder = write_folder(tmp_path, {"en.yaml": english_file(), "es.yaml": {"prompts": texts}})
    with pytest.raises(PromptsError, match=r"prompt 'thanks' uses \{nombre\}"):
        load_prompts(folder)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"es.yaml": {"prompts": {}}}, r"en\.yaml is required"),
        ({"en.yaml": {"prompts": {"greting": "Hi"}}}, r"'greting' is not a prompt"),
        ({"en.yaml": {"prompts": {**ENGLISH.texts, "thanks": ""}}}, r"'thanks' is empty"),
        ({"en.yaml": {"other": 1}}, r"expected a mapping with the prompts under 'prompts'"),
    ],
    ids=["no-english", "unknown-prompt", "empty-prompt", "no-prompts"],
)
def test_malformed_prompts_are_refused(
    tmp_path: Path, files: dict[str, dict[str, object]], message: str
) -> None:
    with pytest.raises(PromptsError, match=message):
        load_prompts(write_folder(tmp_path, files))


def test_a_prompts_file_must_be_named_by_a_language_tag(tmp_path: Path) -> None:
    folder = write_folder(
        tmp_path,
        {"en.yaml": english_file(), "spanish.yaml": {"prompts": dict(ENGLISH.texts)}},
    )
    with pytest.raises(PromptsError, match=r"spanish\.yaml: the file name must be a language tag"):
        load_prompts(folder)


def test_a_company_folder_replaces_the_packaged_prompts(tmp_path: Path) -> None:
    texts = dict(ENGLISH.texts) | {"greeting": "Welcome to Acme!"}
    book = load_prompts(write_folder(tmp_path, {"en.yaml": {"prompts": texts}}))
    assert book.languages() == ["en"] and book.english.say("greeting") == "Welcome to Acme!"
