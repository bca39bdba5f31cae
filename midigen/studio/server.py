"""The studio's web server: the page and its JSON API, over midigen.api.

Flask (with Werkzeug's threaded server): MLflow already installs it, it parses uploads and caps
their size itself, and every request runs on its own thread, so a model call never blocks the
page or another model; one lock per model lets one request at a time use it.

API (every error is JSON {"error": "one line"} with a 4xx status; never a traceback):
- GET /api/models: [{id, source, label, data, family, representation, val_loss, ...}]
- GET /api/defaults: the generate params' defaults (what the page's controls start at)
- GET /api/status: {model id: what runs on it now}
- POST /api/sample: JSON {"model": ID, "num_files": 1, "temperature": 1.0, ...} (or a
  multipart form with that JSON in its "request" field and a "primer" MIDI file); one piece
  comes back as audio/midi, several as JSON with base64 MIDI ("format": "zip" for a zip)
- POST /api/interpolate: multipart, files "a" and "b", "request" {"model", "steps", ...}
- POST /api/humanize, /api/tap2drum, /api/reconstruct: multipart, file "midi", "request"
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import tempfile
import time
import traceback
import zipfile
from pathlib import Path
from typing import Any

from midigen.errors import MidigenError
from midigen.studio.catalog import Catalog

STATIC = Path(__file__).parent / "static"
#: pieces one request may ask for, at most
MAX_NUM_FILES = 16
#: new tokens per piece at most (a web request that samples for an hour helps nobody)
MAX_STEPS = 4096
#: interpolation points at most
MAX_STEPS_INTERPOLATION = 16
#: a request with its uploads, at most (preprocess.max_file_mb's default: the same limit as
#: preprocessing, and every upload is read within preprocess's other limits too)
MAX_REQUEST_MB = 10
#: the controls /api/sample passes to Model.sample
#: the controls /api/harmonize passes on to Model.harmonize (besides voices and track)
HARMONIZE_KEYS = ("temperature", "top_k", "top_p", "seed", "tempo")
SAMPLE_KEYS = (
    "temperature",
    "top_k",
    "top_p",
    "max_steps",
    "seed",
    "greedy",
    "constrained",
    "max_voices",
    "max_note_beats",
    "min_beats",
    "attributes",
    "tempo",
    "key",
    "program",
)
TASK_KEYS = ("temperature", "seed", "tempo")


class HTTPFault(Exception):
    """A request the studio refuses: its status and one line saying why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _piece_json(piece, name: str) -> dict[str, Any]:
    notes = piece.notes
    midi = piece.midi_bytes()
    return {
        "name": name,
        "midi": base64.b64encode(midi).decode("ascii"),
        "tempo": piece.context.tempo_bpm,
        "notes": [
            [
                round(float(n["start_s"]), 4),
                round(float(n["end_s"]), 4),
                int(n["pitch"]),
                int(n["velocity"]),
                bool(n["is_drum"]),
            ]
            for n in notes
        ],
        "duration_s": round(piece.duration_s, 3),
    }


def create_app(catalog: Catalog, token: str | None = None):
    """The Flask app serving the page and the API for `catalog`; with `token`, every API call
    must carry it (header X-Studio-Token or ?token=)."""
    from flask import Flask, Response, jsonify, request, send_from_directory
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
    from werkzeug.utils import secure_filename

    app = Flask("midigen.studio", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_MB * 1_000_000

    def fault(status: int, message: str):
        response = jsonify({"error": message})
        response.status_code = status
        return response

    @app.errorhandler(HTTPFault)
    def _fault(exc: HTTPFault):
        return fault(exc.status, str(exc))

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc):
        return fault(413, f"upload too large: a request may carry {MAX_REQUEST_MB} MB at most")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        return fault(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _crash(exc: Exception):
        traceback.print_exc()  # the server's console gets the details; the page one line
        return fault(500, f"internal error ({type(exc).__name__}); the studio's console has the details")

    @app.before_request
    def _check_token():
        if token is None or not request.path.startswith("/api/"):
            return None
        given = request.headers.get("X-Studio-Token") or request.args.get("token") or ""
        if not secrets.compare_digest(given, token):
            return fault(401, "this studio needs the token it printed at start-up (open the address it printed)")
        return None

    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html")

    @app.get("/static/<path:name>")
    def static_file(name: str):
        return send_from_directory(STATIC, name)

    @app.get("/favicon.ico")
    def favicon():
        return send_from_directory(STATIC, "favicon.svg", mimetype="image/svg+xml")

    @app.get("/api/models")
    def list_models():
        return jsonify([entry.public() for entry in catalog.entries.values()])

    @app.get("/api/defaults")
    def defaults():
        from midigen.params import DEFAULTS

        return jsonify(DEFAULTS["generate"])

    @app.get("/api/status")
    def status():
        return jsonify(dict(catalog.busy))

    # -- reading requests -----------------------------------------------------------------------

    def body() -> dict[str, Any]:
        """The request's JSON: the body, or a multipart form's "request" field."""
        if request.is_json:
            data = request.get_json(silent=True)
        elif "request" in request.form:
            try:
                data = json.loads(request.form["request"])
            except json.JSONDecodeError as exc:
                raise HTTPFault(400, f"the form's request field is not JSON ({exc.msg})") from None
        elif request.mimetype == "multipart/form-data":
            data = {}
        else:
            raise HTTPFault(415, "send JSON (Content-Type: application/json) or a multipart form")
        if not isinstance(data, dict):
            raise HTTPFault(400, 'the request must be a JSON object, e.g. {"model": "best"}')
        return data

    def model_id(data: dict[str, Any]) -> str:
        id_ = data.get("model")
        if not isinstance(id_, str) or not id_:
            raise HTTPFault(400, "model: give the id of a listed model (GET /api/models)")
        if id_ not in catalog.entries:
            if "/" in id_ or "\\" in id_ or id_.endswith(".pt"):
                raise HTTPFault(400, f"model {id_!r}: a model is named by its id, never by a path (GET /api/models)")
            raise HTTPFault(
                404, f"model {id_!r}: no such model; the studio lists {', '.join(catalog.entries) or 'none'}"
            )
        return id_

    def integer(data: dict[str, Any], key: str, default: int, hi: int) -> int:
        value = data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= hi:
            raise HTTPFault(400, f"{key} = {value!r}: the studio takes an integer from 1 to {hi}")
        return value

    def unknown(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
        extra = sorted(set(data) - set(allowed))
        if extra:
            raise HTTPFault(400, f"unknown key {extra[0]!r} (this call takes: {', '.join(sorted(allowed))})")

    def save_upload(field: str, folder: Path) -> Path:
        upload = request.files.get(field)
        if upload is None or not upload.filename:
            raise HTTPFault(400, f"{field}: upload a MIDI file in the form field {field!r}")
        name = secure_filename(upload.filename) or f"{field}.mid"
        path = folder / field / name  # one folder per field: two uploads of one name stay apart
        path.parent.mkdir()
        upload.save(path)
        return path

    def run(id_: str, what: str, folder: Path | None, call):
        """call(model) under the model's lock; a user error becomes a 400 naming the upload (not
        the temporary folder it was saved in)."""
        lock = catalog.lock(id_)
        with lock:
            catalog.busy[id_] = what
            started = time.monotonic()
            try:
                return call(catalog.model(id_))
            except MidigenError as exc:
                message = str(exc)
                if folder is not None:
                    message = message.replace(f"{folder}/", "").replace(str(folder), "")
                    message = _strip_field_folders(message)
                raise HTTPFault(400, message) from None
            finally:
                catalog.busy.pop(id_, None)
                print(f"studio: {what} on {id_}: {time.monotonic() - started:.1f} s", flush=True)

    def output_format(data: dict[str, Any], pieces: int) -> str:
        """The format asked for, checked before any model runs: "midi" (the default for one
        piece), "json" (the default for several) or "zip"."""
        fmt = data.get("format") or ("midi" if pieces == 1 else "json")
        if fmt not in ("midi", "json", "zip"):
            raise HTTPFault(400, f"format = {fmt!r}: one of 'midi', 'json', 'zip'")
        if fmt == "midi" and pieces != 1:
            raise HTTPFault(400, f"format midi is for one piece; this gives {pieces}: ask for json or zip")
        return fmt

    def respond(pieces: list, prefix: str, fmt: str, warning: str | None = None):
        names = [f"{prefix}_{i:02d}.mid" for i in range(len(pieces))]
        if fmt == "midi":
            response = Response(pieces[0].midi_bytes(), mimetype="audio/midi")
            response.headers["Content-Disposition"] = f'attachment; filename="{names[0]}"'
        elif fmt == "zip":
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as z:
                for name, piece in zip(names, pieces, strict=True):
                    z.writestr(name, piece.midi_bytes())
            response = Response(buf.getvalue(), mimetype="application/zip")
            response.headers["Content-Disposition"] = f'attachment; filename="{prefix}.zip"'
        else:
            out = {"pieces": [_piece_json(p, n) for p, n in zip(pieces, names, strict=True)]}
            if warning:
                out["warning"] = warning
            return jsonify(out)
        if warning:
            response.headers["X-Studio-Warning"] = warning
        return response

    # -- the calls ------------------------------------------------------------------------------

    @app.post("/api/sample")
    def sample():
        data = body()
        unknown(data, ("model", "num_files", "format", *SAMPLE_KEYS))
        id_ = model_id(data)
        num = integer(data, "num_files", 1, MAX_NUM_FILES)
        fmt = output_format(data, num)
        if "max_steps" in data:
            integer(data, "max_steps", 1, MAX_STEPS)
        kwargs = {k: data[k] for k in SAMPLE_KEYS if k in data}
        if "attributes" in kwargs and not isinstance(kwargs["attributes"], dict):
            raise HTTPFault(400, 'attributes: an object of name -> amount, e.g. {"density": 1.5}')
        if "greedy" in kwargs and not isinstance(kwargs["greedy"], bool):
            raise HTTPFault(400, f"greedy = {kwargs['greedy']!r}: true or false")
        with tempfile.TemporaryDirectory(prefix="midigen-studio-") as tmp:
            folder = Path(tmp)
            if "primer" in request.files:
                kwargs["primer"] = save_upload("primer", folder)
            if "max_steps" not in kwargs and not catalog.entries[id_].info["has_latent"]:
                kwargs["max_steps"] = min(MAX_STEPS, 1000)
            pieces = run(id_, f"sampling {num}", folder, lambda m: m.sample(num, **kwargs))
            return respond(pieces, "sample", fmt)

    @app.post("/api/interpolate")
    def interpolate():
        data = body()
        unknown(data, ("model", "steps", "format", "bar", *TASK_KEYS))
        id_ = model_id(data)
        steps = integer(data, "steps", 5, MAX_STEPS_INTERPOLATION)
        if steps < 2:
            raise HTTPFault(400, "steps = 1: at least 2 (both ends are included)")
        fmt = output_format(data, steps)
        kwargs = {k: data[k] for k in (*TASK_KEYS, "bar") if k in data}
        with tempfile.TemporaryDirectory(prefix="midigen-studio-") as tmp:
            folder = Path(tmp)
            a, b = save_upload("a", folder), save_upload("b", folder)
            pieces = run(id_, f"interpolating {steps}", folder, lambda m: m.interpolate(a, b, steps, **kwargs))
            return respond(pieces, "interp", fmt)

    @app.post("/api/harmonize")
    def harmonize():
        """A melody (an uploaded MIDI file, its top line or the track named `track`) kept as the
        soprano of a voices model; the model writes the voices below."""
        data = body()
        unknown(data, ("model", "num_files", "format", "voices", "track", *HARMONIZE_KEYS))
        id_ = model_id(data)
        num = integer(data, "num_files", 1, MAX_NUM_FILES)
        fmt = output_format(data, num)
        kwargs = {k: data[k] for k in HARMONIZE_KEYS if k in data}
        if "voices" in data:
            kwargs["voices"] = integer(data, "voices", 4, 16)
        if "track" in data:
            kwargs["track"] = str(data["track"])
        with tempfile.TemporaryDirectory(prefix="midigen-studio-") as tmp:
            folder = Path(tmp)
            melody = save_upload("melody", folder)
            pieces = run(id_, f"harmonizing {num}", folder, lambda m: m.harmonize(melody, num, **kwargs))
            return respond(pieces, "harmony", fmt)

    def file_task(task: str):
        data = body()
        unknown(data, ("model", "format", *TASK_KEYS))
        id_ = model_id(data)
        kwargs = {k: data[k] for k in TASK_KEYS if k in data}
        fmt = output_format(data, 2 if task == "reconstruct" else 1)
        with tempfile.TemporaryDirectory(prefix="midigen-studio-") as tmp:
            folder = Path(tmp)
            midi = save_upload("midi", folder)

            def call(model):
                import warnings

                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    if task == "reconstruct":
                        pieces = list(model.reconstruct(midi, **kwargs))
                    else:
                        pieces = [getattr(model, task)(midi, **kwargs)]
                return pieces, "; ".join(str(w.message) for w in caught) or None

            pieces, warning = run(id_, task, folder, call)
            if warning:
                warning = warning.replace(str(catalog.entries[id_].path), catalog.entries[id_].label)
            return respond(pieces, task, fmt, warning)

    for task in ("humanize", "tap2drum", "reconstruct"):
        app.add_url_rule(f"/api/{task}", task, lambda task=task: file_task(task), methods=["POST"])

    return app


def _strip_field_folders(message: str) -> str:
    """'a/x.mid: no notes' -> 'x.mid: no notes' (uploads are saved under their field's folder)."""
    for field in ("primer/", "a/", "b/", "midi/"):
        if message.startswith(field):
            return message[len(field) :]
    return message
