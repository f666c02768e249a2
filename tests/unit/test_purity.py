"""The functional core stays pure: domain and projection modules import no I/O library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = sorted([*ROOT.glob("services/*/domain.py"), *ROOT.glob("services/*/projections.py")])
FORBIDDEN = {
    "fastapi",
    "starlette",
    "aiokafka",
    "asyncpg",
    "aiosqlite",
    "sqlite3",
    "httpx",
    "asyncio",
    "random",
    "time",
    "uvicorn",
    "shared.web",
    "shared.store",
    "shared.bus",
    "aiosmtplib",
}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_there_is_a_core_to_check() -> None:
    assert len(CORE) >= 4


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_imports_no_io(path: Path) -> None:
    bad = {n for n in imported(path) if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_never_reads_the_clock(path: Path) -> None:
    text = path.read_text()
    assert "datetime.now(" not in text and "utcnow(" not in text
