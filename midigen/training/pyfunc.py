"""The trained model as an MLflow pyfunc model: `mlflow.pyfunc.load_model("models:/midigen@champion")`
then `predict(pd.DataFrame([{"num_files": 2, "temperature": 0.9, "seed": 1}]))` gives MIDI files.

The model folder holds the checkpoint (models/best.pt, self-describing), the generate params it
was trained with (the defaults of every control: max_steps, tempo, key, program, the grammar
limits) and a copy of the midigen package, so it loads wherever its pip requirements are
installed. Signature: each input row is one request, every column optional (missing = the
generate params' value): num_files, temperature, top_k, top_p, seed. Output: one row per piece,
`request` (the input row), `piece` (0..num_files-1) and `midi` (the bytes of a standard MIDI
file, as the generate stage writes it). A MusicVAE samples whole windows from z and ignores
top_k and top_p.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

#: what the model needs at load time (midigen itself travels as code)
REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "pretty_midi", "mido", "symusic", "music21", "PyYAML", "tqdm")
CONTROLS = {"num_files": "long", "temperature": "double", "top_k": "long", "top_p": "double", "seed": "long"}


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec(kind, name, required=False) for name, kind in CONTROLS.items()])
    outputs = Schema([ColSpec("long", "request"), ColSpec("long", "piece"), ColSpec("binary", "midi")])
    return ModelSignature(inputs=inputs, outputs=outputs)


class MidigenModel(mlflow.pyfunc.PythonModel):
    """Samples MIDI from the checkpoint in the model's artifacts."""

    def load_context(self, context) -> None:
        from midigen.training.checkpoint import load_model

        self.loaded = load_model(context.artifacts["checkpoint"], "auto")
        self.generate = json.loads(Path(context.artifacts["generate"]).read_text(encoding="utf-8"))

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        from midigen.generation.generate import sample
        from midigen.models.base import context_from, request_from
        from midigen.params import SCHEMA

        rows = []
        for i, request in enumerate(model_input.to_dict("records")):
            g = dict(self.generate)
            for key, value in request.items():
                if key in CONTROLS and value is not None and not pd.isna(value):
                    g[key] = SCHEMA["generate"][key].check(key, value.item() if hasattr(value, "item") else value)
            seqs = sample(self.loaded, request_from(g))
            with tempfile.TemporaryDirectory() as tmp:
                for j, ids in enumerate(seqs):
                    path = Path(tmp) / f"{j}.mid"
                    self.loaded.rep.write_midi(ids, path, context_from(g))
                    rows.append({"request": i, "piece": j, "midi": path.read_bytes()})
        return pd.DataFrame(rows, columns=["request", "piece", "midi"])


def requirements() -> list[str]:
    out = []
    for name in REQUIREMENTS:
        try:
            out.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def save(checkpoint: str | Path, generate_params: dict[str, Any], path: Path) -> Path:
    """Write the pyfunc model folder for `checkpoint` at `path` (which must not exist)."""
    import midigen

    with tempfile.TemporaryDirectory() as tmp:
        settings = Path(tmp) / "generate.json"
        settings.write_text(json.dumps(generate_params, indent=1, sort_keys=True), encoding="utf-8")
        code = Path(tmp) / "code" / "midigen"
        shutil.copytree(Path(midigen.__file__).parent, code, ignore=shutil.ignore_patterns("__pycache__"))
        with warnings.catch_warnings():  # no input example: checking one would sample at every training
            warnings.filterwarnings("ignore", message=".*input example.*", category=UserWarning)
            mlflow.pyfunc.save_model(
                path=str(path),
                python_model=str(Path(__file__).with_name("pyfunc_entry.py")),  # models from code: no pickle
                artifacts={"checkpoint": str(checkpoint), "generate": str(settings)},
                signature=signature(),
                code_paths=[str(code)],
                pip_requirements=requirements(),
            )
    return path
