"""``docs/config.md`` is the schema rendered: regenerated, never stale, every key explained."""

from pathlib import Path

from cofi_lightning.config.reference import attribute_docs, main, render, undocumented

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_docs_config_is_the_rendered_schema():
    page = (REPO_ROOT / "docs" / "config.md").read_text()
    assert page == render(), "stale: python -m cofi_lightning.config.reference --out docs/config.md"


def test_every_schema_key_is_documented():
    assert undocumented() == []


def test_out_writes_the_page(tmp_path):
    assert main(["--out", str(tmp_path / "config.md")]) == 0
    assert (tmp_path / "config.md").read_text() == render()


def test_shared_attribute_entries_and_inheritance():
    class Base:
        """Base.

        Attributes:
            lr: Learning rate.
        """

    class Child(Base):
        """Child.

        Attributes:
            a_epochs / a_steps: Length, in
                epochs or steps.
        """

    docs = attribute_docs(Child)
    assert docs == {"lr": "Learning rate.", "a_epochs": "Length, in epochs or steps.",
                    "a_steps": "Length, in epochs or steps."}  # fmt: skip
