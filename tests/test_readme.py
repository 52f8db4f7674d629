"""Every Python block of the README and of the user guide runs, in order, in one namespace per document:
the documentation cannot drift.

A ``<!-- readme-test: "OLD" => "NEW"; "OLD2" => "NEW2" -->`` comment on the line
before a block replaces text in that block for the test (smaller sizes only);
``\"`` stands for a quote inside OLD or NEW.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GUIDE = ROOT / "docs" / "guide.md"
_BLOCK = re.compile(r"(?:^<!-- readme-test: (?P<subs>[^\n]*) -->\n)?^```python\n(?P<code>.*?)^```",
                    re.DOTALL | re.MULTILINE)
_SUBSTITUTION = re.compile(r'"(?P<old>(?:[^"\\]|\\.)*)"\s*=>\s*"(?P<new>(?:[^"\\]|\\.)*)"')


def readme_blocks(document: Path = README) -> list[str]:
    blocks = []
    for match in _BLOCK.finditer(document.read_text()):
        code = match["code"]
        for sub in _SUBSTITUTION.finditer(match["subs"] or ""):
            old, new = (sub[part].replace('\\"', '"') for part in ("old", "new"))  # \" is a quote
            assert old in code, f"readme-test substitution {old!r} not found in its block"
            code = code.replace(old, new)
        blocks.append(code)
    return blocks


def test_readme_has_python_blocks():
    assert len(readme_blocks()) >= 3 and len(readme_blocks(GUIDE)) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("document, written", [(README, ["result.h5", "results.h5"]),
                                               (GUIDE, ["result.h5", "na.pt", "results.h5"])],
                         ids=["README", "guide"])
def test_document_python_blocks_run(document, written, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for number, code in enumerate(readme_blocks(document), start=1):
        try:
            exec(compile(code, f"{document.name} python block {number}", "exec"), namespace)
        except Exception as exc:  # name the block, keep the traceback
            raise AssertionError(f"{document.name} python block {number} failed: {exc!r}\n{code}") from exc
    assert all((tmp_path / name).exists() for name in written)
