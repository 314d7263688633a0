"""The architecture: pyproject.toml's import-linter contracts ([tool.importlinter]), run by `lint-imports` on
a copy of glanet, engines and stream (so an import added to the copy proves what is analysed), and the rule
that only stream.cli builds an argparse.Namespace (a command's flags stop at the command line)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("glanet", "engines", "stream")
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]

pytestmark = pytest.mark.timeout(120)


def contract(name_start: str) -> dict:
    (found,) = [c for c in CONTRACTS if c["name"].startswith(name_start)]
    return found


def copy_packages(dest: Path) -> Path:
    """The packages' .py files and pyproject.toml, under `dest`."""
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            target = dest / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    shutil.copyfile(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` in `root`, with `root` first on the path: the copy is analysed, not this checkout
    (which the editable install would find after it)."""
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "1000", "NO_COLOR": "1"}
    command = (
        "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    )
    return subprocess.run(
        [sys.executable, "-c", command, "--no-cache", "--no-logo", "pyproject.toml"],
        capture_output=True, text=True, cwd=root, env=env, timeout=100,
    )  # fmt: skip


def append_import(root: Path, module: str, imported: str) -> str:
    """Add `import imported` at the end of `module` in the copy; the line lint-imports names it by."""
    path = root / (module.replace(".", "/") + ".py")
    text = path.read_text()
    line = text.count("\n") + 1 + (not text.endswith("\n"))
    path.write_text(text + ("" if text.endswith("\n") else "\n") + f"import {imported}\n")
    return f"{module} -> {imported} (l.{line})"


def broken(report: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^(.+) BROKEN$", report, re.MULTILINE)}


def test_the_packages_keep_every_contract(tmp_path):
    proc = lint_imports(copy_packages(tmp_path))
    assert "Analyzed" in proc.stdout, proc.stdout + proc.stderr  # it ran, on the packages
    assert proc.returncode == 0, f"broken: {sorted(broken(proc.stdout))}\n{proc.stdout}"


@pytest.mark.parametrize(
    ("module", "imported", "contracts"),
    [
        # a model that imports the runtime: the model is below everything that runs it
        (
            "glanet.models.sru",
            "stream.runtime.app",
            {"glanet.models imports neither engines nor stream", "glanet never imports stream"},
        ),
        # the runtime that imports the command line: the flags stay in stream.cli
        (
            "stream.runtime.events",
            "stream.cli.run",
            {"nothing outside stream.cli imports stream.cli", contract("stream: cli above")["name"]},
        ),
    ],
)
def test_an_import_against_the_architecture_breaks_its_contract(tmp_path, module, imported, contracts):
    root = copy_packages(tmp_path)
    offending = append_import(root, module, imported)
    proc = lint_imports(root)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert contracts <= broken(proc.stdout), proc.stdout
    assert offending in proc.stdout, proc.stdout  # named by the line added to the copy, so the copy it read


def children(package: str) -> set[str]:
    """The modules and subpackages directly in `package`."""
    here = ROOT / package
    modules = {p.stem for p in here.glob("*.py") if p.name != "__init__.py"}
    return modules | {p.name for p in here.iterdir() if (p / "__init__.py").is_file()}


def test_the_contracts_that_list_modules_list_them_all():
    """Two contracts spell out 'everything but X' (import-linter has no 'except'): a new module is in them."""
    outside_cli = contract("nothing outside stream.cli")["source_modules"]
    assert set(outside_cli) == {"glanet", "engines"} | {f"stream.{m}" for m in children("stream") - {"cli"}}
    outside_models = contract("glanet.models imports nothing of glanet")["forbidden_modules"]
    assert set(outside_models) == {f"glanet.{m}" for m in children("glanet") - {"models"}}


def namespace_calls(source: str) -> list[int]:
    """The lines where `source` builds an argparse.Namespace by hand (argparse's parse_args makes one: that
    is parsing, not building)."""
    tree = ast.parse(source)
    modules = {"argparse"}  # names argparse is bound to
    names: set[str] = set()  # names argparse.Namespace is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.asname or a.name for a in node.names if a.name == "argparse"}
        elif isinstance(node, ast.ImportFrom) and node.module == "argparse":
            names |= {a.asname or a.name for a in node.names if a.name == "Namespace"}
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if (isinstance(f, ast.Name) and f.id in names) or (
            isinstance(f, ast.Attribute)
            and f.attr == "Namespace"
            and isinstance(f.value, ast.Name)
            and f.value.id in modules
        ):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_namespace_finder_finds_what_it_should():
    source = (
        "import argparse\nimport argparse as ap\nfrom argparse import Namespace as NS\n"
        "a = argparse.Namespace(x=1)\nb = ap.Namespace()\nc = NS(y=2)\n"
        "d = argparse.ArgumentParser().parse_args([])\ndef f(args: argparse.Namespace) -> None: ...\n"
    )
    assert namespace_calls(source) == [4, 5, 6]


def test_no_namespace_is_built_outside_the_command_line():
    """stream.cli turns flags into small frozen records (ModelChoice, StreamOptions, ...) and stops there;
    glanet's and engines' commands parse their own arguments in main(argv). Nothing fakes a command line."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.is_relative_to(ROOT / "stream" / "cli"):
                continue
            for line in namespace_calls(path.read_text()):
                found.append(f"{path.relative_to(ROOT)}:{line}")
    assert not found, f"an argparse.Namespace built outside stream/cli: {', '.join(found)}"


def runtime_reaches(source: str) -> list[str]:
    """Where code reads a camera's runtime objects (`x.session`, `x.capture`) instead of its status record."""
    return sorted(
        f"l.{node.lineno} .{node.attr}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and node.attr in ("session", "capture", "runner")
    )


def test_the_reach_finder_finds_what_it_should():
    assert runtime_reaches("x = cam.session.frames\ny = app.capture.name\nz = app.runner") == [
        "l.1 .session", "l.2 .capture", "l.3 .runner",
    ]  # fmt: skip
    assert runtime_reaches("x = status.frames\ny = cam.source") == []


def test_the_web_view_reads_camera_status_records_not_the_runtime():
    """The web API works the same over a run in this process and over a cluster because it reads only the
    Run surface's CameraStatus records."""
    found = {
        path.name: hits
        for path in sorted((ROOT / "stream" / "web").glob("*.py"))
        if (hits := runtime_reaches(path.read_text()))
    }
    assert found == {}
