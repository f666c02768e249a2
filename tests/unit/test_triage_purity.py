"""Triage's pure modules (beyond domain.py, which test_purity checks) import no I/O and never read
the clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_purity import FORBIDDEN, imported

ROOT = Path(__file__).resolve().parents[2]
PURE = [
    ROOT / "services" / "triage" / f"{name}.py"
    for name in ("sla", "state", "major", "roles", "problems", "activity")
]


@pytest.mark.parametrize("path", PURE, ids=lambda p: p.name)
def test_pure_module(path: Path) -> None:
    bad = {n for n in imported(path) if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, f"{path.name} imports {sorted(bad)}"
    text = path.read_text()
    assert "datetime.now(" not in text and "utcnow(" not in text
