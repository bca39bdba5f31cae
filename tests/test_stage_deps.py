"""dvc.yaml's code dependencies cannot drift: every midigen file a stage script imports (its
import closure, followed statically through module-level and function-level imports and the
model registry's import-by-name) is a dependency of that stage, as a file or inside a folder.
And DVC really sees an edit: after changing one such file, `dvc status` names that stage."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT, subprocess_env

MODULE_NAME = "midigen"


def module_file(root: Path, name: str) -> Path | None:
    path = root / Path(*name.split("."))
    if (path / "__init__.py").exists():
        return path / "__init__.py"
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    return None


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported_names(path: Path, root: Path) -> set[str]:
    """Dotted midigen names a file imports (any depth, not under `if TYPE_CHECKING:`); in a file
    that uses importlib, also the string constants that name midigen modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = list(path.relative_to(root).with_suffix("").parts)
    package = parts if path.name == "__init__.py" else parts[:-1]
    if parts[-1] == "__init__":
        package = parts[:-1]
    names: set[str] = set()
    uses_importlib = False
    skip: set[int] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node):
            skip.update(id(n) for n in ast.walk(node) if n is not node)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
            uses_importlib |= any(a.name == "importlib" for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.startswith(MODULE_NAME + ".") and node.value.replace(".", "").replace("_", "").isalnum():
                names.add("#" + node.value)
    out = set()
    for name in names:
        literal = name.startswith("#")
        name = name.lstrip("#")
        if literal and not uses_importlib:
            continue
        if name.split(".")[0] != MODULE_NAME:
            continue
        pieces = name.split(".")
        out.update(".".join(pieces[:i]) for i in range(1, len(pieces) + 1))  # packages run their __init__
    return out


def import_closure(script: Path, root: Path) -> set[str]:
    """Repository-relative paths of the midigen files `script` imports, directly or not."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(path, root):
            found = module_file(root, name)
            if found is not None and found not in seen:
                todo.append(found)
    seen.discard(script)
    return {p.relative_to(root).as_posix() for p in seen}


def stages() -> dict[str, dict]:
    return yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def stage_script(stage: dict) -> Path:
    cmd = stage["cmd"].split()
    assert cmd[0] == "python" and cmd[1].startswith("stages/"), stage["cmd"]
    return PROJECT_ROOT / cmd[1]


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def plain_deps(stage: dict) -> list[str]:
    return [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]


def test_the_closure_follows_function_level_imports_and_the_registry():
    train = import_closure(PROJECT_ROOT / "stages/train.py", PROJECT_ROOT)
    # the loop imports the registry, which imports every family module by name
    assert {"midigen/models/lstm.py", "midigen/models/musicvae.py"} <= train
    # ingest reads params, and params imports no model code
    assert not any(
        p.startswith("midigen/models/") for p in import_closure(PROJECT_ROOT / "stages/ingest.py", PROJECT_ROOT)
    )


@pytest.mark.parametrize("name", list(stages()))
def test_every_midigen_file_a_stage_imports_is_one_of_its_dependencies(name):
    stage = stages()[name]
    script = stage_script(stage)
    deps = plain_deps(stage)
    assert covered(script.relative_to(PROJECT_ROOT).as_posix(), deps), f"{name}: add {script.name} to its deps"
    missing = sorted(p for p in import_closure(script, PROJECT_ROOT) if not covered(p, deps))
    assert not missing, f"dvc.yaml stage {name!r} imports these without listing them as deps: {missing}"


@pytest.mark.pipeline
def test_editing_a_file_a_stage_imports_makes_dvc_status_show_that_stage_changed(tmp_path):
    """For real: a copy of the repository, one imported file per stage edited, `dvc status`."""
    repo = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout
    for rel in files.split():
        if (PROJECT_ROOT / rel).is_file():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / rel, repo / rel)
    env = subprocess_env()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=env)
    # the file of each stage's closure that is imported deepest down (not its own script)
    edited = {}
    for name, stage in stages().items():
        closure = sorted(import_closure(stage_script(stage), PROJECT_ROOT))
        target = next(p for p in reversed(closure) if p.endswith(".py") and not p.endswith("__init__.py"))
        edited[name] = target
        with open(repo / target, "a", encoding="utf-8") as f:
            f.write("\n# edited by test_stage_deps\n")
    proc = subprocess.run(["dvc", "status", "--json"], cwd=repo, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    for name, target in edited.items():
        changed = {
            path for entry in status.get(name, []) if isinstance(entry, dict) for path in entry.get("changed deps", {})
        }
        assert any(covered(target, [c]) for c in changed), (
            f"{name}: editing {target} left it unchanged ({status.get(name)})"
        )
