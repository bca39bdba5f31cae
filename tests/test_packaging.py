"""`pip install .` gets a midigen that imports and runs: the wheel pip builds from pyproject.toml
declares a distribution for every third-party module midigen imports, each declared range admits
the exact pin of requirements.txt (what `make setup` installs and CI tests), and the wheel
installs a `midigen` command. (The install into an empty venv, which downloads the
dependencies, is a manual check: README, Install.)"""

from __future__ import annotations

import ast
import email
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import packages_distributions, version
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, subprocess_env
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

#: requirements.txt pins that are tools of the project, not of the package (its dev extra)
DEV_TOOLS = {"pytest", "ruff", "selenium"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel `pip install .` builds, built from a copy of the package (setuptools writes its
    build/ and egg-info/ folders beside the sources)."""
    pytest.importorskip("setuptools", reason="building the wheel without network needs setuptools installed")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, src / name)
    shutil.copytree(PROJECT_ROOT / "midigen", src / "midigen", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--wheel-dir", str(tmp / "dist"), str(src)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (path,) = (tmp / "dist").glob("midigen-*.whl")
    return path


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(z.read(name))


def declared(wheel: Path) -> dict[str, Requirement]:
    """The wheel's requirements outside any extra, by canonical name."""
    reqs = [Requirement(r) for r in wheel_metadata(wheel).get_all("Requires-Dist") or []]
    return {canonicalize_name(r.name): r for r in reqs if r.marker is None or "extra" not in str(r.marker)}


def third_party_imports() -> set[str]:
    """Top-level names of every module midigen imports (at any depth) that is neither the
    standard library nor midigen."""
    names = set()
    for path in (PROJECT_ROOT / "midigen").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "midigen"}


def pins() -> dict[str, str]:
    lines = (PROJECT_ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    pinned = [ln.split("#")[0].strip() for ln in lines]
    return {canonicalize_name(p.split("==")[0]): p.split("==")[1] for p in pinned if "==" in p}


def test_the_wheel_declares_a_distribution_for_every_module_midigen_imports(wheel):
    requires = declared(wheel)
    modules = third_party_imports()
    assert {"torch", "music21", "numpy", "yaml", "sklearn"} <= modules  # the walk finds imports
    providers = packages_distributions()
    missing = {
        m: providers.get(m, ["?"])
        for m in modules
        if not any(canonicalize_name(d) in requires for d in providers.get(m, []))
    }
    assert not missing, f"imported by midigen but not declared in pyproject.toml: {missing}"


def test_every_declared_range_admits_the_pinned_version(wheel):
    requires, pinned = declared(wheel), pins()
    assert set(pinned) - DEV_TOOLS <= set(requires), "a pin of requirements.txt that pyproject.toml does not declare"
    for name, req in requires.items():
        have = pinned.get(name) or version(req.name)  # not pinned (e.g. mido): what the pins installed
        assert req.specifier.contains(have, prereleases=True), f"{req} does not admit {have}"
    assert str(requires["torch"].specifier) == ">=2.2"  # keeps a user's torch (a CPU or CUDA build)
    dev = [Requirement(r) for r in wheel_metadata(wheel).get_all("Requires-Dist") if 'extra == "dev"' in r]
    assert {canonicalize_name(r.name) for r in dev} == DEV_TOOLS


def test_the_wheel_installs_a_midigen_command(wheel, tmp_path):
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(target)]
        + [str(wheel)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    env = subprocess_env()
    env["PYTHONPATH"] = str(target)  # the installed copy first (its dependencies: this venv's)
    run = subprocess.run(
        [str(target / "bin" / "midigen"), "--version"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"midigen {wheel_metadata(wheel)['Version']}"
    import_path = subprocess.run(
        [sys.executable, "-c", "import midigen.cli, midigen.export.musicxml; print(midigen.cli.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert import_path.stdout.strip().startswith(str(target)), import_path  # the wheel holds every subpackage


def test_the_wheel_carries_the_report_player_and_its_licences(wheel):
    """The report copies midigen/report/assets next to its page: an installed midigen has them."""
    from midigen.report.player import ASSETS, SCRIPTS

    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    for name in SCRIPTS:
        assert f"midigen/report/assets/{name}" in names, name
    for licence in (ASSETS / "licenses").iterdir():
        assert f"midigen/report/assets/licenses/{licence.name}" in names, licence.name
