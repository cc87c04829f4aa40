"""Every Python snippet of the README and the docs runs as printed.

A page's snippets run in order in one namespace, as a reader meets them,
in a fresh interpreter whose working directory is a temporary one (files a
snippet makes land there). Snippets that name a server (a Redis URL, a
PostgreSQL DSN) build their provider, which connects only when used.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def snippets(page: Path) -> list[str]:
    return FENCE.findall(page.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", [p for p in PAGES if snippets(p)], ids=lambda p: p.name)
def test_the_pages_python_snippets_run_as_printed(page: Path, tmp_path: Path) -> None:
    blocks = snippets(page)
    program = "\n".join(
        f"print('--- snippet {n} of {page.name}', flush=True)\n{block}"
        for n, block in enumerate(blocks, 1)
    )
    script = tmp_path / "snippets.py"
    script.write_text(program, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


def test_every_page_with_python_has_snippets_checked() -> None:
    assert snippets(ROOT / "README.md"), "the README shows Python snippets"
