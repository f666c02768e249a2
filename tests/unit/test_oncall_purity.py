"""The on-call core (schedules, escalation, the report) is pure, like every service's domain."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_purity import FORBIDDEN, ROOT, imported

CORE = [ROOT / "services/triage" / name for name in ("oncall.py", "escalation.py", "oncall_report.py")]


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_oncall_core_imports_no_io_and_never_reads_the_clock(path: Path) -> None:
    bad = {n for n in imported(path) if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, f"{path.name} imports {sorted(bad)}"
    text = path.read_text()
    assert "datetime.now(" not in text and "utcnow(" not in text
