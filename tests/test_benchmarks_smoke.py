"""The benchmark command runs and writes its table (no timing is asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_benchmarks(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_quick_run_prints_the_table_and_rewrites_only_its_part_of_the_page(
    tmp_path: Path,
) -> None:
    page = tmp_path / "performance.md"
    page.write_text("# Performance\n\nHand-written introduction.\n", encoding="utf-8")
    args = ("--quick", "--only", "stores,client", "--backends", "memory,file")
    args += ("--output", str(page))

    first = run_benchmarks(*args)

    assert first.returncode == 0, first.stderr
    assert "| file | get |" in first.stdout
    assert "| memory | update |" in first.stdout
    assert "sqlite" not in first.stdout  # only the backends asked for
    assert "0 store calls, 0 network calls" in first.stdout
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# Performance\n\nHand-written introduction.\n")
    assert "| machine | |" in text and "| CPU |" in text
    assert text.count("| file | put |") == 1

    page.write_text(text + "\nA closing note.\n", encoding="utf-8")
    second = run_benchmarks(*args)

    assert second.returncode == 0, second.stderr
    rewritten = page.read_text(encoding="utf-8")
    assert rewritten.count("| file | put |") == 1  # replaced, not appended
    assert rewritten.startswith("# Performance\n\nHand-written introduction.\n")
    assert rewritten.endswith("\nA closing note.\n")


def test_unknown_group_is_refused_with_the_choices() -> None:
    result = run_benchmarks("--only", "nonsense", "--no-write")
    assert result.returncode != 0
    assert "unknown group nonsense; choose from stores, client" in result.stderr
