"""The repository explains itself: no tracked text file points at files outside it, at the
machines it was built on, or at the tracker its work was planned in. A user has the
checkout and nothing else."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# what a user of the checkout cannot follow -> the pattern that finds it
OUTSIDE_POINTERS = {
    "a folder next to the checkout": r"\.\./shared\b",
    "a path on the machines this was built on": r"(?<![\w.])/wor[k]/",
    "an issue number of the tracker this was planned in": r"\b[Ii]ssues? #?\d+",
    "the planning spec this was built from": r"\bspec(?:'s)? section\b|\(spec \d|(?i:\bthe spec\b)|\bselcopy\.md\b",
    "the builders' shared machine": r"\bshared (?:\d+-core )?(?:test )?machine\b",
}
# path -> why it may hold a pattern
ALLOWED = {
    "tests/test_repository.py": "states the patterns themselves",
    "tests/fixtures/outside_pointers.json": "the examples the patterns are tested on",
}
# lines the patterns must find (with how many hits) and lines they must leave alone
EXAMPLES = ROOT / "tests" / "fixtures" / "outside_pointers.json"


def tracked_text_files() -> dict[str, str]:
    """Every git-tracked file that is UTF-8 text: path -> content."""
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    files = {}
    for name in listing.stdout.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file():  # deleted in the work tree, not yet committed
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            files[name] = data.decode()
        except UnicodeDecodeError:
            continue
    return files


def outside_pointers(files: dict[str, str]) -> list[str]:
    """``path:line: what (the text)`` for every hit outside the allow-list."""
    hits = []
    for name, text in sorted(files.items()):
        if name in ALLOWED:
            continue
        lines = text.splitlines()
        for number, line in enumerate(lines, 1):
            # A phrase broken over two lines ("... published with the" / "spec ...") counts
            # on the line where it starts.
            following = lines[number].strip().lstrip("#").strip() if number < len(lines) else ""
            for what, pattern in OUTSIDE_POINTERS.items():
                match = re.search(pattern, line)
                joined = None if match else re.search(pattern, f"{line.rstrip()} {following}")
                if joined and joined.start() < len(line.rstrip()):
                    match = joined
                if match:
                    hits.append(f"{name}:{number}: {what} ({match.group(0)!r} in {line.strip()[:120]!r})")
    return hits


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_no_tracked_file_points_outside_the_repository():
    files = tracked_text_files()
    assert "README.md" in files and "tune_selcopy/run.py" in files  # the listing worked
    assert outside_pointers(files) == []


def test_the_patterns_find_what_they_are_for():
    examples = json.loads(EXAMPLES.read_text())
    lines = examples["pointers"]
    for line, count in lines.items():
        assert len(outside_pointers({"x.md": line})) == count, line
    harmless = examples["harmless"]
    assert outside_pointers({"x.md": "\n".join(harmless)}) == []
