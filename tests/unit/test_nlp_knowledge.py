"""The knowledge file: YAML or CSV the company edits, with errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from percept.nlp.knowledge import KnowledgeError, load_entries


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_packaged_knowledge_loads_with_unique_ids() -> None:
    entries = load_entries()
    assert len(entries) >= 15
    assert len({e.id for e in entries}) == len(entries)
    assert all(e.answer and e.title for e in entries)


def test_yaml_and_csv_give_the_same_entries(tmp_path: Path) -> None:
    yaml_file = write(
        tmp_path,
        "kb.yaml",
        "entries:\n"
        "  - id: hours\n"
        "    title: Opening hours\n"
        "    answer: We open at 9.\n"
        "    questions:\n"
        "      - When do you open?\n"
        "      - Are you open on Sunday?\n",
    )
    csv_file = write(
        tmp_path,
        "kb.csv",
        "id,title,answer,questions,product\n"
        'hours,Opening hours,We open at 9.,"When do you open?|Are you open on Sunday?",\n',
    )
    assert load_entries(yaml_file) == load_entries(csv_file)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "kb.yaml",
            "entries:\n  - id: a\n    title: A\n    answer: one: two\n",
            r"kb.yaml line 4, column 16: not valid YAML: mapping values are not allowed here",
        ),
        (
            "kb.yaml",
            "entries:\n  - id: a\n    title: A\n    answer: x\n  - id: b\n    title: B\n",
            r"kb.yaml line 5: 'answer' is missing",
        ),
        (
            "kb.yaml",
            "entries:\n  - id: a\n    title: A\n    answer: x\n"
            "  - id: a\n    title: B\n    answer: y\n",
            r"kb.yaml line 5: id 'a' is used twice",
        ),
        (
            "kb.yaml",
            "entries:\n  - id: a\n    title: A\n    answr: x\n",
            r"kb.yaml line 2: unknown field 'answr'",
        ),
        ("kb.yaml", "faq: []\n", r"kb.yaml: expected a mapping with a list under 'entries'"),
        ("kb.csv", "id,title\na,A\n", r"kb.csv line 1: missing column\(s\) answer"),
        ("kb.csv", "id,title,answer\na,A,x\nb,,y\n", r"kb.csv line 3: 'title' is missing"),
        ("kb.csv", "id,title,answer\na,A,x,extra\n", r"kb.csv line 2: more values than columns"),
    ],
    ids=[
        "yaml-syntax",
        "missing-answer",
        "duplicate-id",
        "misspelt-field",
        "no-entries-list",
        "csv-missing-column",
        "csv-empty-title",
        "csv-extra-value",
    ],
)
def test_errors_name_the_file_and_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(KnowledgeError, match=message):
        load_entries(write(tmp_path, name, text))


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeError, match=r"kb.yaml: cannot read"):
        load_entries(tmp_path / "kb.yaml")


def test_the_understanding_dir_can_carry_the_knowledge(tmp_path: Path) -> None:
    from percept.nlp.knowledge import knowledge_file
    from percept.runtime.settings import Settings

    assert knowledge_file(Settings(understanding_dir=tmp_path)) is None  # packaged
    write(tmp_path, "knowledge.csv", "id,title,answer\na,A,x\n")
    assert knowledge_file(Settings(understanding_dir=tmp_path)) == tmp_path / "knowledge.csv"
    explicit = tmp_path / "elsewhere.yaml"
    assert knowledge_file(Settings(understanding_dir=tmp_path, nlp_knowledge_file=explicit)) == (
        explicit
    )


def test_answers_and_titles_per_language_fall_back_to_the_region_free_tag(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "kb.yaml",
        "entries:\n"
        "  - id: hours\n"
        "    title: {en: Opening hours, es: Horario}\n"
        "    answer:\n"
        "      en: We open at 9.\n"
        "      es-MX: Abrimos a las 9.\n"
        "      pt-BR: Abrimos às 9.\n",
    )
    (entry,) = load_entries(path)
    assert (entry.title, entry.answer) == ("Opening hours", "We open at 9.")
    assert entry.answer_in("es") == "Abrimos a las 9."  # only es-MX written: a variant beats MT
    assert entry.answer_in("es-MX") == entry.answer_in("es-AR") == "Abrimos a las 9."
    assert entry.title_in("es-MX") == "Horario"
    assert entry.answer_in("pt") == "Abrimos às 9."
    assert entry.answer_in("fr") is None and entry.title_in("fr") is None  # MT's turn
    assert entry.answer_in("en-GB") == "We open at 9."


def test_csv_columns_carry_other_languages(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "kb.csv",
        "id,title,title.es,answer,answer.es,answer.fr\n"
        "hours,Opening hours,Horario,We open at 9.,Abrimos a las 9.,Nous ouvrons à 9 h.\n",
    )
    (entry,) = load_entries(path)
    assert entry.titles == {"es": "Horario"}
    assert entry.answers == {"es": "Abrimos a las 9.", "fr": "Nous ouvrons à 9 h."}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "    answer: {en: Hi., spanish: Hola.}\n",
            "kb.yaml line 4: answer: 'spanish' is not a BCP-47 language tag",
        ),
        (
            "    answer: {en: Hi., es_ES: Hola.}\n",
            "kb.yaml line 4: answer: 'es_ES' is not a BCP-47 language tag (subtags take '-'",
        ),
        (
            "    answer: {en: Hi., xx: Hola.}\n",
            "kb.yaml line 4: answer: 'xx' is not a BCP-47 language tag",
        ),
        ("    answer: {es: Hola.}\n", "kb.yaml line 4: answer has no English ('en') text"),
        ("    answer: {en: Hi., es: ''}\n", "kb.yaml line 4: answer in 'es' is empty"),
    ],
    ids=["a-name", "underscore", "unregistered", "no-english", "empty"],
)
def test_a_language_tag_that_is_not_bcp47_is_refused_with_its_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, "kb.yaml", "entries:\n  - id: a\n    title: A\n" + text)
    with pytest.raises(KnowledgeError) as raised:
        load_entries(path)
    assert str(raised.value).startswith(str(path).replace("kb.yaml", "") + message)


def test_the_packaged_knowledge_is_written_in_english_spanish_and_french() -> None:
    for entry in load_entries():
        assert set(entry.answers) == set(entry.titles) == {"es", "fr"}, entry.id
