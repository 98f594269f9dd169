"""The README's configuration reference is the one generated from the code, every field
of every experiment section has a documented meaning, and no TOML section is left out."""

from __future__ import annotations

from pathlib import Path

from raytrade.algos import experiment
from raytrade.scripts.config_reference import BEGIN, END, SECTIONS, field_docs, reference, settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_carries_the_generated_reference() -> None:
    text = README.read_text()
    assert BEGIN in text and END in text, "README lost its config-reference markers"
    start = text.index(BEGIN)
    stop = text.index(END) + len(END)
    assert text[start:stop] == reference(), \
        "README's reference is stale: paste the output of `raytrade config-reference`"


def test_every_field_is_documented() -> None:
    for section, cls in SECTIONS:
        docs = field_docs(cls)
        for name, _ in settings(cls):
            assert docs.get(name), f"{section} {name} has no docstring"


def test_every_toml_section_is_in_the_reference() -> None:
    names = {name.strip("[]") for name, _ in SECTIONS}
    expected = set(experiment.SECTIONS) | {"features", "env", "env.costs", "env.risk"}
    assert expected <= names
