"""Every bad input of the catalogue gets a clear geoinv error (or warning) and leaves every file untouched."""

from __future__ import annotations

import pytest

from .bad_input_cases import CASES, classify


@pytest.mark.parametrize("entry", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_a_clear_answer(entry, tmp_path):
    outcome, said = classify(entry, tmp_path)
    assert outcome == "clear", f"{entry.kind}: {entry.name} → {outcome}: {said}"
