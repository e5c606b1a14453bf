"""The repository explains itself: no tracked text file points at files outside it, at the
machines it was built on, or at the tracker its work was planned in. A user has the
checkout and nothing else."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# what a user of the checkout cannot follow -> the pattern that finds it
OUTSIDE_POINTERS = {
    "a folder next to the checkout": r"\.\./shared\b",
    "a path on the machines this was built on": r"(?<![\w.])/work/",
    "an issue number of the tracker this was planned in": r"\b[Ii]ssues? #?\d+",
    "the planning spec this was built from": r"\bspec(?:'s)? section\b|\(spec \d|(?i:\bthe spec\b)|\bselcopy\.md\b",
    "the builders' shared machine": r"\bshared (?:\d+-core )?(?:test )?machine\b",
}
# path -> why it may hold a pattern
ALLOWED = {
    "tests/test_repository.py": "states the patterns themselves",
}


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
    lines = {
        "see ../shared/spec/selcopy.md": 2,  # the folder and the spec file
        "python -m tune_selcopy.run attn_act --storage /work/runs": 1,
        "The review of issue 8 measured": 1,
        "the defects of issues 9 and 10": 1,
        "fixed in Issue #12": 1,
        "the mistake (spec section 6)": 1,
        "Choices where the spec is silent": 1,
        "the reference's was cosmetic (spec 3)": 1,
        "the runs published with the\n# spec ship as": 1,
        "41 minutes on the shared 2-core machine at load 16": 1,
        "processes on the shared 2-core test machine": 1,
    }
    for line, count in lines.items():
        assert len(outside_pointers({"x.md": line})) == count, line
    harmless = [
        "results/attn_act-20261201/logs", "rayClusterSpec: {headGroupSpec: ...}", "a GitHub issue template",
        "see github.com/ray-project/ray/issues/53727", "examples/README.md", "spec = load(...)",
        "a shared folder every node can reach", "the machine's 2 cores", "/home/ray/work/tune_selcopy",
    ]
    assert outside_pointers({"x.md": "\n".join(harmless)}) == []
