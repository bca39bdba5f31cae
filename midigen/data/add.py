"""`python -m midigen add-data PATH_OR_URL`: make a corpus DVC data under data/external/ and
point data.source at it.

- a URL (https://, s3://, gs://, ...; a zip or tar archive such as the Groove MIDI Dataset's) or
  a folder or archive outside the project: `dvc import-url` into data/external/<name> (the
  source is recorded in <name>.dvc; `dvc update data/external/<name>.dvc` fetches it again);
- a folder or archive inside the project (e.g. copied under data/external/): `dvc add` it.

Either way the corpus is in DVC's cache: versioned by the .dvc file committed to git, sent by
`dvc push`, fetched by `dvc pull`, and checked out in the temporary copies that queued and
`--temp` experiments run in. Unless --copy is given (or cache.type is already set), the
project's local DVC config gets cache.type reflink,hardlink,symlink, so a Lakh-sized folder is
linked from the cache into the workspace rather than copied (the first link type the file
system supports; a linked file is read-only, as DVC protects its cache).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

from midigen.errors import MidigenError, ParamsError

EXTERNAL = Path("data/external")
LINK_TYPES = "reflink,hardlink,symlink"


def is_url(target: str) -> bool:
    """A URL DVC can import (one-letter schemes are Windows drives, not URLs)."""
    scheme = urlparse(target).scheme
    return len(scheme) > 1 and scheme != "file"


def _dvc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)


def _run_dvc(*args: str) -> str:
    proc = _dvc(*args)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        why = next((ln for ln in lines if ln.startswith("ERROR")), lines[-1] if lines else f"exit {proc.returncode}")
        raise MidigenError(f"dvc {args[0]} failed: {why.removeprefix('ERROR: ')}")
    return proc.stdout


def set_source(params_path: Path, source: str) -> None:
    """Rewrite the `source:` line of params.yaml's data section; every other line stays."""
    lines = params_path.read_text(encoding="utf-8").splitlines(keepends=True)
    value = source if re.fullmatch(r"[\w./~-]+", source) else json.dumps(source)
    section = None
    for i, line in enumerate(lines):
        if line[:1].strip() and not line.startswith("#"):
            section = line.split(":", 1)[0]
        m = re.match(r"([ \t]+source:[ \t]*)([^#\n]*?)([ \t]*#.*)?(\n?)$", line)
        if section == "data" and m:
            lines[i] = m.group(1) + value + (m.group(3) or "") + m.group(4)
            params_path.write_text("".join(lines), encoding="utf-8")
            return
    raise ParamsError(f"{params_path}: no data.source line to set; set data.source: {value} by hand")


def add_data(
    target: str, name: str | None = None, copy: bool = False, params: Path | None = Path("params.yaml")
) -> str:
    """Track `target` with DVC under data/external/ (see the module docstring); set data.source
    in `params` (None: leave it). Returns the new data.source."""
    if not Path("dvc.yaml").is_file() or not Path(".dvc").is_dir():
        raise MidigenError("add-data: run it from the project root (the folder with dvc.yaml and .dvc/)")
    link = not copy and not _dvc("config", "cache.type").stdout.strip()  # unset: DVC copies
    if link:
        _run_dvc("config", "--local", "cache.type", LINK_TYPES)
        print(f"add-data: cache.type {LINK_TYPES} (in .dvc/config.local): the corpus is linked, not copied")
    url = is_url(target)
    local = None if url else Path(target).expanduser().resolve()
    if local is not None and not local.exists():
        raise MidigenError(f"add-data: {target}: no such file or folder")
    inside = local is not None and local.is_relative_to(Path.cwd().resolve())
    if inside:
        dest = local.relative_to(Path.cwd().resolve())
        print(f"add-data: dvc add {dest.as_posix()}")
        _run_dvc("add", dest.as_posix())
        if link:  # dvc add copies into the cache unless hardlink is the first type; link the workspace now
            _run_dvc("checkout", "--relink", dest.as_posix() + ".dvc")
    else:
        base = name or (Path(unquote(urlparse(target).path)).name if url else local.name)
        if not base or base in (".", ".."):
            raise MidigenError(f"add-data: {target}: cannot name it from its path; give --name")
        dest = EXTERNAL / base
        if dest.exists():
            raise MidigenError(f"add-data: {dest} exists already (give another --name, or remove it)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        print(f"add-data: dvc import-url {target} {dest.as_posix()}")
        _run_dvc("import-url", target if url else str(local), dest.as_posix())
    source = dest.as_posix()
    if params is not None:
        set_source(params, source)
        print(f"add-data: data.source = {source} in {params}")
    dvc_file = dest.with_name(dest.name + ".dvc").as_posix()
    print(
        f"next: git add {dvc_file} {dest.parent.as_posix()}/.gitignore params.yaml && "
        f"git commit -m 'corpus {dest.name}'; dvc push sends the corpus to the remote"
    )
    if not dest.as_posix().startswith(EXTERNAL.as_posix() + "/"):
        print(f"note: the ingest stage depends on {EXTERNAL}/; a corpus elsewhere does not rerun it when it changes")
    return source


def cmd_add_data(args: argparse.Namespace) -> int:
    add_data(args.target, args.name, args.copy, None if args.no_params else Path("params.yaml"))
    return 0


def register(sub) -> None:
    """The add-data subcommand, on the CLI's subparsers."""
    p = sub.add_parser(
        "add-data",
        help="make a folder, an archive or a URL DVC data under data/external/ and set data.source to it",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("target", help="a folder or archive (.zip, .tar.gz, ...) of MIDI files, or its URL")
    p.add_argument("--name", help="its name under data/external/ (default: the last part of its path or URL)")
    p.add_argument("--copy", action="store_true", help=f"leave cache.type alone (default: set it to {LINK_TYPES})")
    p.add_argument("--no-params", action="store_true", help="do not set data.source in params.yaml")
    p.set_defaults(func=cmd_add_data)
