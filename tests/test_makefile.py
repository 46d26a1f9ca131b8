"""The README's headline commands work as the very first command on a fresh clone (issue 15,
item 18): ``make test`` and ``make quickstart`` install what they need once, then reuse it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def dry_run(target: str, venv: Path) -> list[str]:
    """The commands ``make -n <target>`` would run with ``VENV=venv`` (recursive makes included)."""
    out = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.splitlines()


@pytest.mark.parametrize("target", ["test", "quickstart", "pytest", "lint"])
def test_first_command_on_a_fresh_clone_installs_first(tmp_path: Path, target: str) -> None:
    venv = tmp_path / "venv"  # does not exist: a fresh clone
    lines = dry_run(target, venv)
    creates = next(i for i, line in enumerate(lines) if f"-m venv {venv}" in line)
    uses = next(
        i for i, line in enumerate(lines) if line.startswith(f"{venv}/bin/") and "pip" not in line
    )
    assert creates < uses, lines


def test_installed_venv_is_reused(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / ".installed").touch()  # newer than pyproject.toml
    lines = dry_run("test", venv)
    assert not any("-m venv" in line or "pip install" in line for line in lines), lines
    assert any("pytest" in line for line in lines)
