"""Write docs/cli.md from the commands' own --help (``--check`` fails if it is stale).

    python scripts/cli_reference.py          # regenerate
    python scripts/cli_reference.py --check  # exit 1 if docs/cli.md differs
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "cli.md"


def render() -> str:
    os.environ["COLUMNS"] = "100"
    os.environ["NO_COLOR"] = "1"
    os.environ["TERM"] = "dumb"
    from custdyn.cli import app

    runner = CliRunner()
    top = runner.invoke(app, ["--help"], terminal_width=100)
    import typer.main

    names = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    parts = [
        "# Command-line reference",
        "",
        "Generated from each command's `--help` by `python scripts/cli_reference.py`; a test "
        "fails when it is stale. Exit codes: 0 done, 1 done with rejected records (or with "
        "warnings under `analyze --strict`), 2 refused.",
        "",
        "```text",
        top.output.rstrip(),
        "```",
    ]
    for name in names:
        out = runner.invoke(app, [name, "--help"], terminal_width=100).output.rstrip()
        parts += ["", f"## custdyn {name}", "", "```text", out, "```"]
    return "\n".join(parts) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not DOC.exists() or DOC.read_text() != text:
            print("docs/cli.md is stale: run python scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
