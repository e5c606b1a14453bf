"""The KubeRay image, checked without a Docker engine: cluster/Dockerfile's instructions,
and what its build context holds under .dockerignore, read with Docker's own matching
rules (github.com/moby/patternmatcher, as BuildKit applies them)."""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from cluster_files import ROOT, load, project_version, python_tag, ray_pin, readme_commands

DOCKERFILE = ROOT / "cluster" / "Dockerfile"
APP = "/home/ray/tune_selcopy"


# --------------------------------------------------------------------------- .dockerignore
def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern, str]]:
    """(re-include?, regex, pattern) per rule, as Docker reads a .dockerignore.

    Blank lines and ``#`` comments are skipped; ``!`` re-includes; each pattern is cleaned
    like a path and taken from the context root (a leading ``/`` is dropped). In the
    regex, ``*`` and ``?`` stay within one path element, ``**/`` spans any number of
    them, and ``**`` at the end matches everything below.
    """
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = posixpath.normpath(line.removeprefix("!").strip()).removeprefix("/")
        regex, i = "^", 0
        while i < len(pattern):
            if pattern.startswith("**", i):
                i += 2 + pattern.startswith("/", i + 2)
                regex += ".*" if i >= len(pattern) else "(.*/)?"
                continue
            ch = pattern[i]
            if ch == "\\" and i + 1 < len(pattern):
                regex, i = regex + re.escape(pattern[i + 1]), i + 1
            else:
                regex += {"*": "[^/]*", "?": "[^/]", ".": r"\.", "$": r"\$"}.get(ch, ch)
            i += 1
        rules.append((include, re.compile(regex + "$"), pattern))
    return rules


def ignored(path: str, rules) -> bool:
    """Whether Docker leaves ``path`` (relative, /-separated) out of the context: the
    last rule that matches the path or one of its parent folders decides."""
    parents = path.split("/")[:-1]
    excluded = False
    for include, regex, _ in rules:
        if include != excluded:  # only a rule that could change the answer is tried
            continue
        if regex.match(path) or any(regex.match("/".join(parents[: i + 1])) for i in range(len(parents))):
            excluded = not include
    return excluded


def build_context(root: Path) -> list[str]:
    """The files `docker build root` sends. Like BuildKit, an ignored folder is not
    walked unless a re-include rule names something inside it."""
    rules = dockerignore_rules((root / ".dockerignore").read_text())
    reincluded = [pattern for include, _, pattern in rules if include]
    files = []
    for folder, dirs, names in os.walk(root):
        rel = Path(folder).relative_to(root).as_posix()
        rel = "" if rel == "." else rel + "/"
        dirs[:] = [d for d in dirs if not ignored(rel + d, rules)
                   or any(p.startswith(rel + d + "/") for p in reincluded)]
        files += [rel + n for n in names if not ignored(rel + n, rules)]
    return sorted(files)


def test_docker_matching_rules():
    """The matcher follows Docker, not git: rules start at the root, ** spans folders,
    the last match wins, a folder's rule covers what is inside it."""
    rules = dockerignore_rules("# comment\n/build\n*.log\n**/cache\n!keep.log\nsrc/**/gen\n")
    assert ignored("build/x.o", rules) and ignored("a.log", rules)
    assert not ignored("sub/a.log", rules)  # no implicit **/, unlike .gitignore
    assert ignored("cache/x", rules) and ignored("a/b/cache/x", rules)
    assert not ignored("keep.log", rules)
    assert ignored("src/gen/x", rules) and ignored("src/a/b/gen/x", rules) and not ignored("gen/x", rules)


def test_dockerignore_keeps_bulk_out_of_the_build_context(tmp_path):
    (tmp_path / ".dockerignore").write_text((ROOT / ".dockerignore").read_text())
    keep = ["pyproject.toml", "README.md", "tune_selcopy/run.py", "tune_selcopy/__init__.py",
            "search_spaces/__init__.py", "search_spaces/attn_act.py"]
    drop = [".venv/lib/python3.11/site-packages/torch/__init__.py", ".git/objects/ab/cdef", ".git/HEAD",
            "results/attn_invent/logs/t1/validation-001.parquet", "ray_results/exp/state.json",
            "tune_selcopy/__pycache__/run.cpython-311.pyc", "search_spaces/__pycache__/x.pyc",
            ".pytest_cache/v/x", "tune_selcopy.egg-info/PKG-INFO", "build/lib/x.py", "dist/x.whl",
            "checkpoint.ckpt", "model.pt", "data/big.parquet", ".env", "auth_token", "notes/scratch.md"]
    for rel in keep + drop:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    context = build_context(tmp_path)
    assert set(keep) <= set(context)
    assert not set(context) & set(drop), set(context) & set(drop)


def test_repo_build_context_holds_what_the_install_reads():
    context = build_context(ROOT)
    assert not [f for f in context if f.startswith((".venv/", ".git/", "results/", "ray_results/"))
                or "__pycache__" in f or f.endswith((".parquet", ".ckpt", ".pt", ".pyc"))], context
    with open(ROOT / "pyproject.toml", "rb") as f:
        pyproject = tomllib.load(f)
    # `pip install -e .` reads pyproject.toml, the readme it names, and the packages.
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= set(context)
    folders = pyproject["tool"]["setuptools"].get("package-dir", {})
    for package in pyproject["tool"]["setuptools"]["packages"]:
        folder = folders.get(package, package.replace(".", "/"))
        sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).glob("*.py")}
        assert f"{folder}/__init__.py" in sources and sources <= set(context), package
    assert sum((ROOT / f).stat().st_size for f in context) < 2**20  # sources only: under 1 MiB


# --------------------------------------------------------------------------- Dockerfile
def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of cluster/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1])
            for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _torch_pin(text: str) -> str:
    (pin,) = set(re.findall(r"torch==([0-9][0-9.]*)", text))
    return pin


def test_dockerfile_installs_the_pinned_stack():
    steps = _instructions()
    kinds = [kind for kind, _ in steps]
    assert steps[0] == ("FROM", f"rayproject/ray:{ray_pin()}-{python_tag()}-gpu")
    runs = [i for i, (kind, _) in enumerate(steps) if kind == "RUN"]
    torch_step = next(i for i in runs if "torch==" in steps[i][1])
    project_step = next(i for i in runs if APP in steps[i][1])
    copy_step = kinds.index("COPY")
    # torch first (the project only asks torch>=2.4), then the code, then the project
    assert torch_step < copy_step < project_step
    # the same torch as CI, CPU machines (scripts/setup.sh) and the launcher configs' workers
    assert _torch_pin(steps[torch_step][1]) == _torch_pin((ROOT / "scripts" / "setup.sh").read_text())
    for name in ("aws-gpu.yaml", "gcp-gpu.yaml"):
        assert _torch_pin(" ".join(load(name)["worker_setup_commands"])) == _torch_pin(steps[torch_step][1])
    copy_args = shlex.split(steps[copy_step][1])
    assert copy_args[-2:] == [".", APP] and "--chown=ray:users" in copy_args  # whole context, ray-owned
    assert re.search(rf'pip install [^&]*-e "?{re.escape(APP)}\[cluster\]"?', steps[project_step][1])
    assert ("WORKDIR", APP) in steps


@pytest.fixture(scope="module")
def image_tag() -> str:
    """The tag cluster/kuberay.yaml runs (head and workers use the same image)."""
    spec = load("kuberay.yaml")["spec"]["rayClusterSpec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    (image,) = {c["image"] for g in groups for c in g["template"]["spec"]["containers"]}
    return image.rsplit(":", 1)[1]


def test_image_tag_records_what_the_dockerfile_builds(image_tag):
    base_variant = _instructions()[0][1].rsplit("-", 1)[1]
    assert image_tag == f"{project_version()}-ray{ray_pin()}-{python_tag()}-{base_variant}"


def test_documented_build_uses_the_dockerfile_and_the_tag(image_tag):
    (build,) = [c for c in readme_commands() if c.argv[:2] == ["docker", "build"]]
    args = build.argv
    assert (ROOT / args[args.index("-f") + 1]) == DOCKERFILE
    assert args[args.index("-t") + 1].endswith(f":{image_tag}")
    assert args[-1] == "."  # the context is the repository root, where .dockerignore is
    (push,) = [c for c in readme_commands() if c.argv[:2] == ["docker", "push"]]
    assert push.argv[2] == args[args.index("-t") + 1]
