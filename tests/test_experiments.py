"""End to end: the whole pipeline (ingest -> ... -> evaluate) with a tiny model in a throwaway git
repo, then DVC experiments on top of it, MLflow tracking and `dvc plots show`.

One scenario runs once per module (it takes about a minute); each test checks one part of it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml
from conftest import PROJECT_ROOT, TINY_MODEL, TINY_TRAIN, VENV_BIN, random_melody, subprocess_env, write_pretty_midi

from midigen.data.split import unit_hash

pytestmark = [
    pytest.mark.pipeline,
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"),  # inside mlflow
]

WATCHED = "data/external/tiny"
STAGES = ("ingest", "preprocess", "split", "train", "generate", "evaluate", "report")
DVC = str(VENV_BIN / "dvc")


def run(cmd: list[str], cwd, env, timeout: int = 400, stdout_only: bool = False) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout if stdout_only else proc.stdout + proc.stderr


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def piece_names(seed: int, val_ratio: float, test_ratio: float, wanted: dict[str, int]) -> dict[str, list[str]]:
    """File names whose hash split (midigen.data.split) is test / val / train, `wanted` of each: a
    corpus of 7 files lands in all three splits and the test split has 2 pieces to compare with."""
    names: dict[str, list[str]] = {k: [] for k in wanted}
    k = 0
    while any(len(names[s]) < n for s, n in wanted.items()):
        name = f"piece_{k:03d}.mid"
        u = unit_hash(seed, name)
        split = "test" if u < test_ratio else "val" if u < test_ratio + val_ratio else "train"
        if len(names[split]) < wanted[split]:
            names[split].append(name)
        k += 1
    return names


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, chorale_paths):
    root = tmp_path_factory.mktemp("exp_repo")
    env = subprocess_env()
    for var in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        env.pop(var, None)  # MLflow defaults to sqlite:///<repo root>/mlflow.db
    dvc_home = tmp_path_factory.mktemp("dvc_home")
    env["DVC_SITE_CACHE_DIR"] = str(dvc_home / "site")
    env["DVC_GLOBAL_CONFIG_DIR"] = str(dvc_home / "global")
    env["DVC_SYSTEM_CONFIG_DIR"] = str(dvc_home / "system")
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_CONFIG_GLOBAL"] = str(dvc_home / "gitconfig")
    env["OMP_NUM_THREADS"] = "1"  # tiny models; the machine has 2 busy cores

    run(["git", "init", "-q"], root, env)
    run(["git", "config", "user.name", "midigen tests"], root, env)
    run(["git", "config", "user.email", "tests@example.invalid"], root, env)
    for name in ("dvc.yaml", "params.yaml", ".gitignore", "data/external/.gitignore"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_ROOT / name, root / name)
    for folder in ("stages", "midigen"):
        # dvc.yaml's deps name these files; the code that runs is still the installed package
        shutil.copytree(PROJECT_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "metrics").mkdir()

    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    params["data"].update(source=WATCHED, max_pieces=0, workers=1)
    params["model"].update(TINY_MODEL)
    params["train"].update(TINY_TRAIN)
    params["generate"].update(num_files=2, max_steps=50)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")

    s = params["split"]
    names = piece_names(s["seed"], s["val_ratio"], s["test_ratio"], {"test": 2, "val": 1, "train": 4})
    melodies = tmp_path_factory.mktemp("melodies")
    melody = [write_pretty_midi(melodies / f"m{i}.mid", random_melody(300 + i, n=40)) for i in range(2)]
    by_name = {p.stem: p for p in chorale_paths}
    # the four longest chorales train (~3000 tokens: enough for a model whose samples react
    # to the temperature), one chorale and a melody are the test pieces, a melody validates
    sources = {
        "test": [by_name["bwv11.6"], melody[0]],
        "val": [melody[1]],
        "train": [by_name[n] for n in ("bwv66.6", "bwv4.8", "bwv10.7", "bwv1.6")],
    }
    for split, files in sources.items():
        for name, src in zip(names[split], files, strict=True):
            (root / WATCHED).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / WATCHED / name)
    run([DVC, "init", "-q"], root, env)
    shutil.copytree(PROJECT_ROOT / ".dvc/plots", root / ".dvc/plots")  # dvc.yaml's plot templates

    out = {"root": root, "env": env, "names": names}
    out["repro"] = run([DVC, "repro"], root, env)
    out["files_after_repro"] = {p: (root / p).exists() for p in ("models/best.pt", "models/last.pt")}
    out["eval_after_repro"] = json.loads((root / "metrics/eval.json").read_text(encoding="utf-8"))
    out["repro_again"] = run([DVC, "repro"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-q", "-m", "tiny baseline"], root, env)
    out["exp_lr"] = run([DVC, "exp", "run", "-S", "train.lr=0.002"], root, env)
    out["exp_show"] = json.loads(run([DVC, "exp", "show", "--json"], root, env, stdout_only=True))
    out["exp_temp"] = run([DVC, "exp", "run", "-S", "generate.temperature=0.6"], root, env)
    out["plots"] = run([DVC, "plots", "show", "-o", str(root / "dvc_plots")], root, env)
    return out


def exp_name(output: str) -> str:
    match = re.search(r"Ran experiment\(s\): (\S+)", output)
    assert match, output
    return match.group(1)


def test_dvc_repro_runs_every_stage_and_writes_model_samples_and_metrics(scenario):
    root, output = scenario["root"], scenario["repro"]
    assert stages_run(output) == set(STAGES), output
    assert all(scenario["files_after_repro"].values()), scenario["files_after_repro"]
    samples = sorted(p.name for p in (root / "outputs/generated").glob("*.mid"))
    assert samples == ["sample_00.mid", "sample_01.mid"]
    train = json.loads((root / "metrics/train.json").read_text(encoding="utf-8"))
    assert train["epochs"] == TINY_TRAIN["epochs"] and train["best_val_loss"] > 0
    curve = (root / "metrics/train_curve.csv").read_text(encoding="utf-8").splitlines()
    assert curve[0] == "epoch,train_loss,val_loss,train_perplexity,val_perplexity"
    assert len(curve) == 1 + TINY_TRAIN["epochs"]
    ev = scenario["eval_after_repro"]
    assert ev["num_generated"] == 2 and ev["num_test"] == 2
    assert ev["test_nll"] > 0 and 0 <= ev["distribution_score"] <= 1
    assert set(ev["distance"]) and all(0 <= v["overlap"] <= 1 for v in ev["distance"].values())


def test_a_second_dvc_repro_runs_nothing(scenario):
    assert stages_run(scenario["repro_again"]) == set(), scenario["repro_again"]


def test_exp_run_with_a_new_learning_rate_reruns_train_generate_evaluate_and_report_only(scenario):
    output = scenario["exp_lr"]
    assert stages_run(output) == {"train", "generate", "evaluate", "report"}, output
    exp_name(output)


def test_exp_show_lists_the_experiment_with_its_params_and_metrics(scenario):
    name = exp_name(scenario["exp_lr"])
    found = []
    for baseline in scenario["exp_show"]:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                if rev.get("name") == name:
                    found.append(rev)
    assert len(found) == 1, json.dumps(scenario["exp_show"])[:3000]
    data = found[0]["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["lr"] == 0.002
    metrics = data["metrics"]
    assert metrics["metrics/train.json"]["data"]["best_val_loss"] > 0
    assert "distribution_score" in metrics["metrics/eval.json"]["data"]


def test_exp_run_with_a_new_temperature_reruns_generate_evaluate_and_report_only(scenario):
    # (evaluate reruns because the samples change; a model that had learnt nothing would give
    # the same samples at any temperature and DVC would rightly skip evaluate)
    output = scenario["exp_temp"]
    assert stages_run(output) == {"generate", "evaluate", "report"}, output


def mlflow_runs(root):
    import mlflow

    # a client of its own: mlflow.set_tracking_uri() would export MLFLOW_TRACKING_URI to every
    # later test of the session (the studio would list this store's registered models)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("midigen")
    assert experiment is not None, "no MLflow experiment 'midigen' in the repo's mlflow.db"
    return client, client.search_runs(experiment_ids=[experiment.experiment_id])


def test_mlflow_holds_one_finished_run_per_training_with_per_epoch_losses(scenario):
    client, runs = mlflow_runs(scenario["root"])
    # trained twice: by `dvc repro` and by the learning-rate experiment (the temperature one
    # does not train)
    assert len(runs) == 2, [r.info for r in runs]
    assert {r.info.status for r in runs} == {"FINISHED"}, "no run may be left RUNNING"
    assert sorted(r.data.params["train.lr"] for r in runs) == ["0.002", "0.003"]
    for r in runs:
        for key in ("val_loss", "train_loss", "val_perplexity"):
            history = client.get_metric_history(r.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(1, TINY_TRAIN["epochs"] + 1)), key
        assert "best_val_loss" in r.data.metrics
        # evaluate adds the generated MIDI, report the page (also those of the temperature
        # experiment, whose checkpoint is the baseline's: found by its sha256)
        assert [a.path for a in client.list_artifacts(r.info.run_id)] == ["best.pt", "generated", "report"]
        assert "test_nll" in r.data.metrics


def test_the_mlflow_store_lives_at_the_repo_root_and_stays_out_of_git(scenario):
    root, env = scenario["root"], scenario["env"]
    assert (root / "mlflow.db").is_file()
    tracked = run(["git", "ls-files"], root, env, stdout_only=True).split()
    assert not [f for f in tracked if f == "mlflow.db" or f.startswith("mlartifacts/")], tracked


def test_the_experiments_mlflow_run_is_tagged_with_the_dvc_experiment_name(scenario):
    name = exp_name(scenario["exp_lr"])
    _, runs = mlflow_runs(scenario["root"])
    tagged = [r for r in runs if r.data.tags.get("dvc_exp_name") == name]
    assert len(tagged) == 1, [r.data.tags for r in runs]
    assert tagged[0].data.params["train.lr"] == "0.002"
    baseline = [r for r in runs if r.data.params["train.lr"] == "0.003"]
    assert "dvc_exp_name" not in baseline[0].data.tags, "a plain `dvc repro` is no experiment"


def test_dvc_plots_show_writes_an_html_report(scenario):
    index = scenario["root"] / "dvc_plots" / "index.html"
    assert index.is_file(), scenario["plots"]
    html = index.read_text(encoding="utf-8")
    for plot in ("loss", "perplexity", "set_distance"):
        assert plot in html, plot


def test_dvc_repro_writes_the_report_with_a_piano_roll_per_sample(scenario):
    root = scenario["root"]
    assert re.search(r"report: \d+ pieces", scenario["repro"]), scenario["repro"]
    page = (root / "reports" / "index.html").read_text(encoding="utf-8")
    for name in ("sample_00", "sample_01"):
        assert (root / "reports" / "img" / f"{name}.png").is_file(), name
        assert f'src="img/{name}.png"' in page


def test_the_studio_offers_the_workspace_model_each_experiments_model_and_registered_ones(scenario, monkeypatch):
    from midigen.studio.catalog import find

    root, name = scenario["root"], exp_name(scenario["exp_lr"])
    for var in ("DVC_SITE_CACHE_DIR", "DVC_GLOBAL_CONFIG_DIR", "DVC_SYSTEM_CONFIG_DIR", "GIT_CONFIG_GLOBAL"):
        monkeypatch.setenv(var, scenario["env"][var])
    # register the learning-rate experiment's model (its run's best.pt) in the repo's MLflow store
    client, runs = mlflow_runs(root)
    trained = next(r for r in runs if r.data.params["train.lr"] == "0.002")
    client.create_registered_model("midigen-tiny")
    client.create_model_version("midigen-tiny", f"{trained.info.artifact_uri}/best.pt", trained.info.run_id)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    catalog = find(root / "models", "cpu")
    try:
        entries = catalog.entries
        assert entries["best"].source == "workspace" and entries["best"].data == WATCHED
        experiment = entries[f"exp-{name}"]
        assert (experiment.source, experiment.label, experiment.info["family"]) == ("dvc experiment", name, "lstm")
        # the experiment's own model (read from the DVC cache), not the workspace's
        (shown,) = [
            rev["data"]
            for baseline in scenario["exp_show"]
            for exp in baseline.get("experiments") or []
            for rev in exp.get("revs") or []
            if rev.get("name") == name
        ]
        best = shown["metrics"]["metrics/train.json"]["data"]["best_val_loss"]
        assert experiment.info["val_loss"] == pytest.approx(best, abs=1e-4)
        (commit,) = [row for row in scenario["exp_show"] if row["rev"] != "workspace"]
        assert experiment.info["val_loss"] != pytest.approx(
            commit["data"]["metrics"]["metrics/train.json"]["data"]["best_val_loss"], abs=1e-4
        ), "the experiment's model is the committed one"
        registered = entries["mlflow-midigen-tiny-v1"]
        assert (registered.source, registered.label) == ("mlflow", "midigen-tiny v1")
        assert registered.info["val_loss"] == experiment.info["val_loss"]
        assert catalog.model(experiment.id).sample(1, max_steps=5)[0].tokens[0] == "<BOS>"
    finally:
        catalog.close()
