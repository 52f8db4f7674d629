"""Every Python block of the README runs, in order, in one namespace: the documentation cannot drift.

A ``<!-- readme-test: "OLD" => "NEW"; "OLD2" => "NEW2" -->`` comment on the line
before a block replaces text in that block for the test (smaller sizes only);
``\"`` stands for a quote inside OLD or NEW.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"(?:^<!-- readme-test: (?P<subs>[^\n]*) -->\n)?^```python\n(?P<code>.*?)^```",
                    re.DOTALL | re.MULTILINE)
_SUBSTITUTION = re.compile(r'"(?P<old>(?:[^"\\]|\\.)*)"\s*=>\s*"(?P<new>(?:[^"\\]|\\.)*)"')


def readme_blocks() -> list[str]:
    blocks = []
    for match in _BLOCK.finditer(README.read_text()):
        code = match["code"]
        for sub in _SUBSTITUTION.finditer(match["subs"] or ""):
            old, new = (sub[part].replace('\\"', '"') for part in ("old", "new"))  # \" is a quote
            assert old in code, f"readme-test substitution {old!r} not found in its block"
            code = code.replace(old, new)
        blocks.append(code)
    return blocks


def test_readme_has_python_blocks():
    assert len(readme_blocks()) >= 3


@pytest.mark.slow
def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for number, code in enumerate(readme_blocks(), start=1):
        try:
            exec(compile(code, f"README.md python block {number}", "exec"), namespace)
        except Exception as exc:  # name the block, keep the traceback
            raise AssertionError(f"README python block {number} failed: {exc!r}\n{code}") from exc
    assert (tmp_path / "result.h5").exists() and (tmp_path / "na.pt").exists()
