"""The generated references in docs/reference/ say what the code says: regenerated in memory by
docs/gen.py, each must equal the committed file (else: run `make docs` and commit)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel, Field

ROOT = Path(__file__).resolve().parents[2]


def load_gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("custos_docs_gen", ROOT / "docs" / "gen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen = load_gen()


@pytest.mark.parametrize("page", sorted(gen.PAGES))
def test_the_committed_reference_is_what_the_code_says(page: str) -> None:
    committed = (ROOT / "docs" / "reference" / page).read_text(encoding="utf-8")
    assert gen.PAGES[page]() == committed, (
        f"docs/reference/{page} no longer matches the code: run `make docs` and commit it"
    )


def test_the_references_do_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = gen.cli_reference()
    for columns in ("40", "300"):
        monkeypatch.setenv("COLUMNS", columns)
        monkeypatch.setenv("FORCE_COLOR", "1")
        assert gen.cli_reference() == expected
    assert "\x1b[" not in expected


def test_every_command_and_option_is_in_the_cli_reference() -> None:
    text = gen.cli_reference()
    for heading in ("## custos ingest", "### custos fixity run", "### custos users add"):
        assert f"\n{heading}\n" in text
    assert "`--depositor <str>`" in text and "`--data-dir <path>`" in text


def test_every_setting_is_in_the_settings_reference_with_its_environment_name() -> None:
    text = gen.settings_reference()
    line = "- **`max_files`** · integer, > 0 · default `2000000` · `CUSTOS_LIMITS__MAX_FILES`"
    assert line in text
    assert "`CUSTOS_LOCATIONS__<NAME>__SECRET_KEY`" in text
    assert "## [characterisation]" in text and '### kind = "s3"' in text


class Undocumented(BaseModel):
    #: Documented above.
    above: int = 1
    beside: int = Field(default=2, ge=0)  # documented beside
    silent: int = 3


def test_a_setting_without_a_comment_is_an_error() -> None:
    comments = gen.field_comments(Undocumented)
    assert comments == {"above": "Documented above.", "beside": "Documented beside.", "silent": ""}
    with pytest.raises(SystemExit, match=r"Undocumented\.silent has no comment"):
        list(gen._rows(Undocumented, "CUSTOS_"))
