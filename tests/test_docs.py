"""The docs keep up with the code: every command and option is in docs/cli.md, every setting
is documented, the README shows the two commands, and the Python examples run."""

from __future__ import annotations

from pathlib import Path

import typer.main

from custdyn.cli import app
from custdyn.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_lists_every_command_and_option() -> None:
    doc = (ROOT / "docs" / "cli.md").read_text()
    group = typer.main.get_command(app)
    stale = []
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        if f"## custdyn {name}\n" not in doc:
            stale.append(name)
            continue
        section = doc.split(f"## custdyn {name}\n", 1)[1].split("\n## ", 1)[0]
        for p in cmd.params:
            for opt in getattr(p, "opts", []):
                if opt.startswith("--") and opt not in section:
                    stale.append(f"{name} {opt}")
    assert not stale, f"docs/cli.md is stale ({stale}); run python scripts/cli_reference.py"


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "ingest.md").read_text()
    d = Settings().to_dict()
    for section, values in d.items():
        if isinstance(values, dict):
            for key in values:
                assert f"{key} =" in doc, f"setting {section}.{key} is not in docs/ingest.md"


def test_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_python_examples_in_the_docs_run() -> None:
    """Every ``>>>`` example in README.md and docs/*.md runs and prints what it shows
    (those marked ``# doctest: +SKIP`` need a workspace the docs do not build)."""
    import doctest

    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    failed = {}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        got = doctest.testfile(str(path), module_relative=False, optionflags=flags,
                               verbose=False, report=False)
        if got.failed:
            failed[path.name] = got.failed
    assert not failed, f"failing examples: {failed}"
