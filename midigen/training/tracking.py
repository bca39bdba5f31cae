"""MLflow tracking: one run per execution of the train stage.

Where things go. Default store: SQLite at the repository root (mlflow.db) with artifacts in
mlartifacts/ next to it, both git-ignored. Queued and --temp DVC experiments run in a temporary
copy of the repo that DVC deletes afterwards; DVC_ROOT points back at the real root, so every
run's database rows and artifacts land there. MLFLOW_TRACKING_URI overrides the store (e.g. a
shared tracking server); relative paths in it are read from the root too. midigen talks to
MLflow through an MlflowClient only: mlflow.set_tracking_uri() would export MLFLOW_TRACKING_URI
and make the default store look like a user's choice. The experiment is created with an explicit
artifact location (MLflow's default is ./mlruns of the current folder: inside the temporary
copy); a tracking server keeps its own artifact store.

Faults. `preflight` checks the store in seconds, before any data is read: a server that does not
answer, a database file that is not one, an artifact folder that cannot be written. Each is one
line naming the store; tracking.on_error decides whether that stops the stage (fail) or the
training goes on without logging (warn). Once training runs, a logging failure never stops it:
one warning, no more logging for that run, and the run ends FAILED with a tag saying why (when
the store takes that last write; otherwise a warning names the run left behind).

After training. The run carries the checkpoint's sha256 as a tag (CHECKPOINT_TAG), so the stages
after train find it by the bytes of models/best.pt (`training_run`) and log to it: evaluate its
metrics and the generated MIDI, report the page. The checkpoint itself holds no run id: it stays
byte-identical for the same data and params, and dvc.lock with it. The model is logged as an
MLflow pyfunc model (midigen.training.pyfunc) and registered (midigen.training.registry);
the training split is logged as a dataset input.
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
import socket
import sqlite3
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from midigen.errors import MidigenError

EXPERIMENT = "midigen"
#: how long the up-front probe waits for a server or a database host to answer
PROBE_TIMEOUT_S = 5
#: MLflow's own HTTP defaults (7 retries, backoff factor 2, 120 s timeout) let one call to a
#: server that went away block training for minutes; these apply unless the user set them
HTTP_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
#: set by a preflight that gave up logging, so torchrun's workers inherit the decision
DISABLED_ENV = "MIDIGEN_TRACKING_DISABLED"
SQLITE_HEADER = b"SQLite format 3\x00"
DB_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}
#: the run tag holding the sha256 of the run's models/best.pt: how later stages find the run
CHECKPOINT_TAG = "midigen.checkpoint_sha256"


class TrackingError(MidigenError):
    """The MLflow store cannot be used (unreachable, not a database, artifacts not writable)."""


def repo_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI with relative local paths anchored at the repository root, or the
    default SQLite file there."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        return f"sqlite:///{repo_root() / 'mlflow.db'}"
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        if path and not path.startswith("/") and not path.startswith(":memory:"):
            return f"sqlite:///{repo_root() / path}"
        return uri
    if not urlparse(uri).scheme:  # a plain folder: MLflow's file store
        return (repo_root() / uri).resolve().as_uri()
    return uri


def _redact(uri: str) -> str:
    """A URI fit to print: no password."""
    return re.sub(r"(//[^/:@]*):[^@/]*@", r"\1:***@", uri)


@dataclass(frozen=True)
class Store:
    """Where runs are logged, and what kind of store that is."""

    uri: str

    @property
    def scheme(self) -> str:
        return urlparse(self.uri).scheme.split("+")[0].lower()

    @property
    def kind(self) -> str:
        if self.scheme in ("http", "https"):
            return "http"
        if self.scheme == "sqlite":
            return "sqlite"
        if self.scheme in DB_PORTS:
            return "database"
        return "other"  # file store, databricks, a plugin's scheme

    @property
    def db_path(self) -> Path | None:
        if self.kind != "sqlite":
            return None
        path = unquote(self.uri[len("sqlite:///") :].split("?")[0])
        return Path(path) if path and not path.startswith(":memory:") else None

    @property
    def is_default(self) -> bool:
        return not os.environ.get("MLFLOW_TRACKING_URI", "").strip()

    def describe(self) -> str:
        if self.db_path is not None:
            return f"MLflow database {self.db_path}"
        if self.kind == "http":
            return f"MLflow tracking server {_redact(self.uri)}"
        return f"MLflow store {_redact(self.uri)}"

    def artifact_location(self) -> str | None:
        """Where a new experiment keeps artifacts: next to a SQLite file; under the repository
        root for a database midigen talks to directly; None: the server's (or store's) own."""
        if self.db_path is not None:
            return (self.db_path.parent / "mlartifacts").as_uri()
        if self.kind == "database":
            return (repo_root() / "mlartifacts").as_uri()
        return None


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=repo_root()
        ).stdout.strip()
    except Exception:
        return "unknown"


def short_reason(exc: BaseException) -> str:
    """One line for an MLflow, requests or SQLite error (theirs span many lines)."""
    text = " ".join(str(exc).split())
    for pattern, reason in (
        (r"Connection refused", "connection refused (nothing listens there)"),
        (r"timed out|Timeout", "no answer (timed out)"),
        (r"Name or service not known|nodename nor servname|getaddrinfo failed|Failed to resolve", "unknown host"),
        (r"database is locked", "database is locked"),
        (r"file is not a database", "not an SQLite database (corrupt or overwritten?)"),
        (r"malformed", "damaged (database disk image is malformed)"),
        (r"readonly database|read-only", "read-only"),
        (r"no such table", "its tables are gone (the file was deleted or replaced?)"),
        (r"unable to open database file", "cannot open the file"),
    ):
        if re.search(pattern, text, re.IGNORECASE):
            return reason
    text = text or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _is_local(location: str) -> bool:
    return urlparse(location).scheme in ("", "file")


def _local_path(location: str) -> Path:
    parsed = urlparse(location)
    return Path(unquote(parsed.path) if parsed.scheme == "file" else location)


def _in_temp_experiment(path: Path) -> bool:
    """Inside a folder DVC deletes: .dvc/tmp (its temporary experiment copies live there)."""
    parts = path.parts
    return any(a == ".dvc" and b == "tmp" for a, b in zip(parts, parts[1:], strict=False))


class Run:
    """An open MLflow run. A failed call prints one warning and turns logging off for the rest
    of the run: training goes on (every epoch is in metrics/train_curve.csv anyway), and a
    store that went away costs at most one timeout, not one per epoch."""

    #: what the warning of a failed call says goes on
    GOES_ON = "training goes on without logging, every epoch is still written to metrics/train_curve.csv"

    def __init__(self, client, run_id: str, store: Store, experiment_id: str | None = None, goes_on: str = GOES_ON):
        self._client = client
        self.run_id = run_id
        self.store = store
        self.experiment_id = experiment_id
        self.goes_on = goes_on
        self.error: str | None = None

    @property
    def client(self):
        return self._client

    def guarded(self, what: str, fn: Callable[[], Any]) -> None:
        """Run fn (more logging, e.g. midigen.training.registry's) as every call here is run."""
        self._call(what, fn)

    @contextmanager
    def as_default(self) -> Iterator[None]:
        """MLFLOW_TRACKING_URI = this run's store while the block runs: MLflow resolves a
        models:/ URI with a default client, whose store would otherwise be the current folder's
        (a temporary experiment's copy of the repo)."""
        with _env({"MLFLOW_TRACKING_URI": self.store.uri}):
            yield

    def _call(self, what: str, fn: Callable[[], Any]) -> None:
        """fn(), or one warning and no more logging for this run when it fails."""
        if self.error is not None:
            return
        try:
            fn()
        except Exception as exc:  # never let logging end a training
            self.error = f"{what} failed: {short_reason(exc)}"
            print(f"warning: mlflow: {self.error} ({self.store.describe()}); {self.goes_on}", flush=True)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self._call("logging metrics", lambda: self._client.log_batch(self.run_id, metrics=batch))

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:500]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            chunk = items[i : i + 100]
            self._call("logging params", lambda chunk=chunk: self._client.log_batch(self.run_id, params=chunk))

    def log_artifact(self, path: str | Path) -> None:
        self._call(f"saving {Path(path).name}", lambda: self._client.log_artifact(self.run_id, str(path)))

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        self._call("setting tags", lambda: self._client.log_batch(self.run_id, tags=batch))

    def log_artifacts(self, folder: str | Path, artifact_path: str, pattern: str = "*") -> None:
        """The files of `folder` matching `pattern` (recursively) under artifact_path/."""
        folder = Path(folder)
        for f in sorted(p for p in folder.rglob(pattern) if p.is_file()):
            where = (Path(artifact_path) / f.parent.relative_to(folder)).as_posix()
            self._call(
                f"saving {f.name}", lambda f=f, where=where: self._client.log_artifact(self.run_id, str(f), where)
            )

    def log_dataset(self, frame, name: str, context: str, source: str) -> None:
        """A table (e.g. a split's rows of the token index) as an MLflow dataset input."""

        def log():
            import warnings

            import mlflow.data
            from mlflow.entities import DatasetInput, InputTag

            with warnings.catch_warnings():  # MLflow's hints on sources and integer columns, for models
                warnings.simplefilter("ignore", UserWarning)
                entity = mlflow.data.from_pandas(frame, source=source, name=name)._to_mlflow_entity()
            tags = [InputTag("mlflow.data.context", context)]
            self._client.log_inputs(self.run_id, datasets=[DatasetInput(entity, tags)])

        self._call(f"logging the {context} dataset", log)

    def log_eval_metrics(self, metrics: dict[str, Any]) -> None:
        """Every number of a (nested) metrics dict, named by its path (c2st.accuracy; characters
        MLflow refuses in a name become "_", and "+" "plus": voice_count.8plus)."""
        flat = {
            re.sub(r"[^\w\-. :/]", "_", k.replace("+", "plus")): v
            for k, v in flatten(metrics).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        keys = sorted(flat)
        for i in range(0, len(keys), 1000):  # MLflow takes at most 1000 metrics per batch
            self.log_metrics({k: flat[k] for k in keys[i : i + 1000]})

    @contextmanager
    def system_metrics(self, on: bool) -> Iterator[None]:
        """MLflow's system metrics monitor (CPU, memory, disk, network, GPU) while the block runs."""
        monitor = None
        if on and self.error is None:
            try:
                from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

                monitor = SystemMetricsMonitor(self.run_id, tracking_uri=self.store.uri)
                monitor.start()
            except Exception as exc:  # e.g. psutil missing: training goes on
                print(f"warning: mlflow: no system metrics ({short_reason(exc)})", flush=True)
                monitor = None
        try:
            yield
        finally:
            if monitor is not None:
                try:
                    monitor.finish()
                except Exception:
                    pass


class _NoRun(Run):
    """What ranks other than 0 of a distributed run log to, and a training without logging."""

    def __init__(self):
        self.error = None

    def _call(self, what: str, fn: Callable[[], Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_artifact(self, path: str | Path) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_artifacts(self, folder: str | Path, artifact_path: str, pattern: str = "*") -> None:
        pass

    def log_dataset(self, frame, name: str, context: str, source: str) -> None:
        pass

    def log_eval_metrics(self, metrics: dict[str, Any]) -> None:
        pass

    @contextmanager
    def system_metrics(self, on: bool) -> Iterator[None]:
        yield

    @contextmanager
    def as_default(self) -> Iterator[None]:
        yield


@contextmanager
def no_run() -> Iterator[Run]:
    yield _NoRun()


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _quiet_mlflow() -> None:
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # each store error is reported here as one line; these would add a traceback (SQLite) or a
    # line per HTTP retry to it
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def _check_sqlite_file(path: Path) -> None:
    """A database file that is not one fails here at once, naming it (MLflow would retry it
    for a while and end in a traceback that does not)."""
    if path.exists():
        if not path.is_file():
            raise TrackingError(f"MLflow database {path} is not a file")
        try:
            with open(path, "rb") as f:
                header = f.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise TrackingError(f"MLflow database {path} cannot be read ({exc.strerror})") from None
        if header and header != SQLITE_HEADER:
            raise TrackingError(f"MLflow database {path} is not an SQLite database (corrupt or overwritten?)")
        try:
            with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=PROBE_TIMEOUT_S)) as db:
                db.execute("select count(*) from sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):  # locked: a parallel experiment writes; MLflow waits for it
                raise TrackingError(f"MLflow database {path}: {short_reason(exc)}") from None
        except sqlite3.DatabaseError as exc:
            raise TrackingError(f"MLflow database {path}: {short_reason(exc)}") from None
        if not os.access(path, os.W_OK):
            raise TrackingError(f"MLflow database {path} is read-only")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not os.access(folder, os.W_OK):  # SQLite writes its journal next to the file
        raise TrackingError(f"MLflow database {path}: folder {folder} is not writable")


def _check_host(store: Store) -> None:
    """A database server that does not answer: refused or silent within seconds (MLflow retries
    connecting for about an hour)."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(store.uri)
    except Exception as exc:
        raise TrackingError(f"{store.describe()}: not a database URI ({short_reason(exc)})") from None
    if not url.host:  # a local socket
        return
    port = url.port or DB_PORTS.get(store.scheme)
    try:
        socket.create_connection((url.host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise TrackingError(f"{store.describe()} is unreachable: {short_reason(exc)}") from None


def _with_retries(fn: Callable[[], Any], store: Store, attempts: int = 6, delay_s: float = 0.5) -> Any:
    """Parallel experiments share one SQLite file: creating its tables or the experiment can
    race. SQLite waits for locks itself (MLflow sets busy_timeout); this covers what is left.
    Other stores retry on their own (HTTP) or have no such race."""
    if store.kind != "sqlite":
        return fn()
    for attempt in range(attempts):
        try:
            return fn()
        except TrackingError:
            raise
        except Exception as exc:
            if attempt == attempts - 1:
                raise
            print(f"mlflow: retrying after {type(exc).__name__} ({attempt + 1}/{attempts - 1})", flush=True)
            time.sleep(delay_s * (2**attempt))


def _ensure_experiment(client, store: Store):
    """The experiment, created with an explicit artifact location when missing. One whose
    artifacts go to a folder DVC deletes (an experiment first created by a temporary
    experiment's copy of the repo, before midigen set the location), or, in the default store,
    outside this repository (a copied mlflow.db), is renamed out of the way (its runs and
    metrics stay) and a new one is created: using it would lose or misplace every artifact."""
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None and exp.lifecycle_stage == "deleted":
        raise TrackingError(
            f"{store.describe()}: experiment {EXPERIMENT!r} is deleted; restore it "
            f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or delete it for good (mlflow gc)"
        )
    location = store.artifact_location()
    if exp is not None and _is_local(exp.artifact_location):
        path = _local_path(exp.artifact_location)
        why = None
        if _in_temp_experiment(path):
            why = "a temporary DVC experiment folder, deleted after the experiment"
        elif store.is_default and not path.is_relative_to(repo_root()):
            why = "outside this repository (a copied mlflow.db?)"
        if why:
            old = f"{EXPERIMENT}-stale-artifacts-{exp.experiment_id}"
            client.rename_experiment(exp.experiment_id, old)
            print(f"mlflow: experiment {EXPERIMENT!r} kept artifacts in {path}, {why}; renamed it {old!r}", flush=True)
            exp = None
    if exp is None:
        try:
            client.create_experiment(EXPERIMENT, artifact_location=location)
        except Exception:
            # another experiment of a parallel queue created it first: fine if it exists now
            if client.get_experiment_by_name(EXPERIMENT) is None:
                raise
        exp = client.get_experiment_by_name(EXPERIMENT)
    return exp


def _check_artifacts(store: Store, location: str, tracking: str) -> None:
    """A local artifact folder must take a new folder now, not fail at log_artifact after the
    whole training; a remote one must at least have an artifact repository for its scheme."""
    if _is_local(location):
        path = _local_path(location)
        try:
            path.mkdir(parents=True, exist_ok=True)
            os.rmdir(tempfile.mkdtemp(prefix=".write-check-", dir=path))
        except OSError as exc:
            raise TrackingError(f"MLflow artifact folder {path} is not writable ({exc.strerror})") from None
        return
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    try:
        get_artifact_repository(location, tracking_uri=tracking)
    except Exception as exc:
        raise TrackingError(f"MLflow artifact store {_redact(location)} cannot be used: {short_reason(exc)}") from None


def _open(store: Store):
    """Probe the store and get the experiment: (client, experiment); TrackingError otherwise."""
    from mlflow import MlflowClient

    _quiet_mlflow()
    if store.db_path is not None:
        _check_sqlite_file(store.db_path)
    elif store.kind == "database":
        _check_host(store)
    client = MlflowClient(tracking_uri=store.uri)
    try:
        if store.kind == "http":
            # one quick try: a server that is down answers "refused" at once, a silent one times out
            with _env({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(PROBE_TIMEOUT_S)}):
                client.get_experiment_by_name(EXPERIMENT)
        exp = _with_retries(lambda: _ensure_experiment(client, store), store)
    except TrackingError:
        raise
    except Exception as exc:
        problem = short_reason(exc)
        unreachable = problem.startswith(("connection refused", "no answer", "unknown host"))
        raise TrackingError(f"{store.describe()}{' is unreachable' if unreachable else ''}: {problem}") from None
    _check_artifacts(store, exp.artifact_location, store.uri)
    return client, exp


@dataclass
class Tracker:
    """The outcome of the preflight: a store to log to, or none and why."""

    store: Store | None
    experiment_id: str | None = None
    client: Any = None
    reason: str | None = None

    @contextmanager
    def start_run(self, params: dict[str, Any], tags: dict[str, str]) -> Iterator[Run]:
        """Open an MLflow run; it ends FINISHED, FAILED (also when logging failed on the way),
        or KILLED (on Ctrl-C), never left running while the store takes writes."""
        if self.store is None:
            yield _NoRun()
            return
        exp_name = os.environ.get("DVC_EXP_NAME")
        from mlflow.tracking.context.registry import resolve_tags

        run_tags = {"git_commit": git_commit(), **({"dvc_exp_name": exp_name} if exp_name else {}), **tags}
        try:
            info = _with_retries(
                lambda: (
                    self.client.create_run(
                        self.experiment_id, tags=resolve_tags(run_tags), run_name=exp_name or None
                    ).info
                ),
                self.store,
            )
        except Exception as exc:  # the store broke between the preflight and now
            print(
                f"warning: mlflow: cannot start a run ({self.store.describe()}: {short_reason(exc)}); "
                "training without logging",
                flush=True,
            )
            yield _NoRun()
            return
        run = Run(self.client, info.run_id, self.store, self.experiment_id)
        run.log_params(flatten(params))
        status = "FAILED"
        try:
            yield run
            status = "FINISHED"
        except KeyboardInterrupt as exc:
            status = "KILLED"
            # a Ctrl-C inside a database read leaves that read's cursor, and SQLite's lock with
            # it, alive in the interrupted frames: drop their locals so ending the run can write
            traceback.clear_frames(exc.__traceback__)
            gc.collect()
            raise
        finally:
            self._end(run, status)

    def _end(self, run: Run, status: str) -> None:
        from mlflow.entities import RunTag

        if run.error is not None and status == "FINISHED":
            status = "FAILED"  # its record is incomplete; the tag says why
            try:
                self.client.log_batch(run.run_id, tags=[RunTag("midigen.tracking_error", run.error)])
            except Exception:
                pass
        try:
            self.client.set_terminated(run.run_id, status)
        except Exception as exc:
            print(
                f"warning: mlflow: run {run.run_id} could not be ended ({short_reason(exc)}); "
                f"it may show as RUNNING in {self.store.describe()}",
                flush=True,
            )
            return
        why = f"; logging stopped: {run.error}" if run.error else ""
        print(f"mlflow: run {run.run_id} {status.lower()} ({_redact(self.store.uri)}){why}", flush=True)


def preflight(on_error: str = "fail") -> Tracker:
    """Check the tracking store before training: a broken one raises TrackingError (one line
    naming it) with on_error "fail"; with "warn" it prints that line and training goes on
    without logging."""
    if os.environ.get(DISABLED_ENV):
        return Tracker(None, reason=os.environ[DISABLED_ENV])
    store = _store()
    try:
        client, exp = _open(store)
    except TrackingError as exc:
        if on_error != "warn":
            raise TrackingError(f"{exc}; to train without logging set tracking.on_error: warn") from None
        print(f"warning: {exc}; training without MLflow logging (tracking.on_error: warn)", flush=True)
        os.environ[DISABLED_ENV] = str(exc)
        return Tracker(None, reason=str(exc))
    return Tracker(store, exp.experiment_id, client)


def sha256_file(path: str | Path) -> str:
    """The file's sha256 (a checkpoint: read whole, as loading it does anyway)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _store() -> Store:
    """The store to log to, with midigen's HTTP retry settings for a server (unless set)."""
    store = Store(tracking_uri())
    if store.kind == "http":
        for key, value in HTTP_SETTINGS.items():
            os.environ.setdefault(key, value)
    return store


def training_run(checkpoint: str | Path, what: str) -> Run:
    """The MLflow run that trained `checkpoint` (the latest run tagged with its sha256), to log
    `what` (e.g. "evaluation metrics") to; a run that logs nothing when the store is broken or
    holds no such run (a checkpoint pulled from a DVC remote, a training without logging), with
    one line saying so. Never raises: the stage's results are in its files either way."""
    if os.environ.get(DISABLED_ENV):
        return _NoRun()
    store = _store()
    try:
        client, exp = _open(store)
        digest = sha256_file(checkpoint)
        runs = client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`{CHECKPOINT_TAG}` = '{digest}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    except TrackingError as exc:
        print(f"warning: {exc}; {what} not logged to MLflow", flush=True)
        return _NoRun()
    except Exception as exc:
        print(f"warning: mlflow: {store.describe()}: {short_reason(exc)}; {what} not logged to MLflow", flush=True)
        return _NoRun()
    if not runs:
        print(f"mlflow: no run trained {checkpoint} (sha256 {digest[:12]}) in {store.describe()}; {what} not logged")
        return _NoRun()
    print(f"mlflow: {what} -> run {runs[0].info.run_id} ({_redact(store.uri)})", flush=True)
    return Run(client, runs[0].info.run_id, store, exp.experiment_id, goes_on=f"{what} not logged")
