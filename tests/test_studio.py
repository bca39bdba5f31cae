"""midigen studio's JSON API (Flask's test client against the real app and real tiny checkpoints:
an event LSTM and a GrooVAE trained in the tests): every call gives MIDI that pretty_midi
opens, bad requests and uploads get one clear 4xx message, a path never names a model, one
request at a time uses a model, and a studio on a public address wants its token."""

from __future__ import annotations

import base64
import io
import threading
import time
import zipfile

import numpy as np
import pretty_midi
import pytest

import midigen
from midigen.studio import is_loopback
from midigen.studio.catalog import find
from midigen.studio.server import MAX_NUM_FILES, create_app


@pytest.fixture(scope="module", autouse=True)
def one_thread(torch_one_thread):
    yield


@pytest.fixture(scope="module")
def workspace(studio_workspace):
    return studio_workspace


@pytest.fixture(scope="module")
def catalog(workspace):
    catalog = find(workspace / "models", "cpu")
    yield catalog
    catalog.close()


@pytest.fixture(scope="module")
def client(catalog):
    return create_app(catalog).test_client()


def midi_of(data: bytes) -> pretty_midi.PrettyMIDI:
    return pretty_midi.PrettyMIDI(io.BytesIO(data))


def note_count(pm: pretty_midi.PrettyMIDI) -> int:
    return sum(len(inst.notes) for inst in pm.instruments)


def upload(source, name: str | None = None) -> tuple[io.BytesIO, str]:
    """A form file from a path (named as it) or from bytes (named `name`)."""
    if isinstance(source, bytes):
        return io.BytesIO(source), name
    return io.BytesIO(source.read_bytes()), name or source.name


def form(request: dict, **files) -> dict:
    import json

    return {"request": json.dumps(request), **files}


def error_of(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:500])
    message = response.get_json()["error"]
    assert "\n" not in message and "Traceback" not in message and "midigen-studio-" not in message, message
    return message


def test_the_model_list_says_what_each_checkpoint_is_and_no_server_path(client, workspace):
    response = client.get("/api/models")
    models = {m["id"]: m for m in response.get_json()}
    assert set(models) == {"best", "groove"}  # notes.pt is no checkpoint
    assert (models["best"]["family"], models["best"]["representation"]) == ("lstm", "events")
    assert (models["groove"]["family"], models["groove"]["representation"]) == ("musicvae", "groove")
    assert models["groove"]["groove"] and "density" in models["groove"]["attributes"]
    assert models["best"]["val_loss"] > 0 and models["best"]["data_fingerprint"] == "chorales"
    assert str(workspace) not in response.get_data(as_text=True)


def test_one_sampled_piece_is_the_midi_file_the_api_writes(client, workspace):
    request = {"model": "best", "num_files": 1, "temperature": 1.0, "max_steps": 60, "seed": 4}
    response = client.post("/api/sample", json=request)
    assert response.status_code == 200 and response.mimetype == "audio/midi"
    assert 'filename="sample_00.mid"' in response.headers["Content-Disposition"]
    assert note_count(midi_of(response.data)) > 0
    piece = midigen.load(workspace / "models" / "best.pt", "cpu").sample(1, temperature=1.0, max_steps=60, seed=4)[0]
    assert response.data == piece.midi_bytes()


def test_several_pieces_come_as_json_with_base64_midi_or_as_a_zip(client):
    request = {"model": "best", "num_files": 3, "max_steps": 40, "seed": 1}
    pieces = client.post("/api/sample", json=request).get_json()["pieces"]
    assert [p["name"] for p in pieces] == ["sample_00.mid", "sample_01.mid", "sample_02.mid"]
    for p in pieces:
        assert note_count(midi_of(base64.b64decode(p["midi"]))) == len(p["notes"])
    response = client.post("/api/sample", json={**request, "format": "zip"})
    assert response.mimetype == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.data)) as z:
        assert z.namelist() == [p["name"] for p in pieces]
        assert [base64.b64encode(z.read(n)).decode() for n in z.namelist()] == [p["midi"] for p in pieces]


def test_an_uploaded_midi_file_is_continued(client, workspace, chorale_paths):
    primer = chorale_paths[0]
    request = form({"model": "best", "max_steps": 30}, primer=upload(primer))
    response = client.post("/api/sample", data=request, content_type="multipart/form-data")
    assert response.status_code == 200, response.get_data(as_text=True)
    model = midigen.load(workspace / "models" / "best.pt", "cpu")
    piece = model.sample(1, primer=primer, max_steps=30)[0]
    assert response.data == piece.midi_bytes()
    assert len(piece.ids) > len(model.rep.encode(model.rep.read_piece(primer))) - 1  # the primer and more


def test_interpolation_humanize_and_tap2drum_give_drum_midi(client, tiny_groovae):
    a, b = tiny_groovae[1][:2]
    response = client.post(
        "/api/interpolate", data=form({"model": "groove", "steps": 4, "format": "json"}, a=upload(a), b=upload(b))
    )
    pieces = response.get_json()["pieces"]
    assert len(pieces) == 4 and all(midi_of(base64.b64decode(p["midi"])).instruments[0].is_drum for p in pieces)
    response = client.post("/api/humanize", data=form({"model": "groove"}, midi=upload(a)))
    assert response.mimetype == "audio/midi"
    played = midi_of(response.data)
    assert note_count(played) == note_count(pretty_midi.PrettyMIDI(str(a)))  # every hit kept, played anew
    response = client.post("/api/reconstruct", data=form({"model": "groove", "format": "zip"}, midi=upload(b)))
    with zipfile.ZipFile(io.BytesIO(response.data)) as z:  # the window and its reconstruction
        assert [midi_of(z.read(n)).instruments[0].is_drum for n in z.namelist()] == [True, True]
    response = client.post("/api/tap2drum", data=form({"model": "groove", "format": "json"}, midi=upload(b)))
    assert "trained with train.input_transform = humanize" in response.get_json()["warning"]
    assert "models/groove.pt" in response.get_json()["warning"]


def test_bad_uploads_get_a_clear_4xx(client, tmp_path):
    noise = np.random.default_rng(0).bytes(2000)
    message = error_of(
        client.post("/api/humanize", data=form({"model": "groove"}, midi=upload(noise, "noise.mid"))), 400
    )
    assert message.startswith("noise.mid: not a readable MIDI file")
    big = b"MThd" + bytes(50_000_000)
    message = error_of(client.post("/api/humanize", data=form({"model": "groove"}, midi=upload(big, "big.mid"))), 413)
    assert "10 MB at most" in message
    silent = tmp_path / "silent.mid"
    pretty_midi.PrettyMIDI().write(str(silent))
    message = error_of(client.post("/api/sample", data=form({"model": "best"}, primer=upload(silent))), 400)
    assert message == "silent.mid: no notes"
    assert "no drum" in error_of(client.post("/api/humanize", data=form({"model": "groove"}, midi=upload(silent))), 400)
    assert "upload a MIDI file" in error_of(client.post("/api/humanize", data=form({"model": "groove"})), 400)


@pytest.mark.parametrize("name", ["/etc/passwd", "models/best.pt", "..\\models\\best.pt", "best.pt"])
def test_a_path_never_names_a_model(client, name):
    assert "never by a path" in error_of(client.post("/api/sample", json={"model": name}), 400)


@pytest.mark.parametrize(
    "request_, status, words",
    [
        ({"model": "nope"}, 404, "no such model; the studio lists best, groove"),
        (
            {"model": "best", "num_files": MAX_NUM_FILES + 1},
            400,
            f"num_files = 17: the studio takes an integer from 1 to {MAX_NUM_FILES}",
        ),
        ({"model": "best", "max_steps": 10**6}, 400, "max_steps = 1000000"),
        ({"model": "best", "top_k": "many"}, 400, "top_k = 'many': expected an integer"),
        ({"model": "best", "topk": 3}, 400, "unknown key 'topk'"),
        ({"model": "groove", "top_k": 3}, 400, "top_k: a musicvae model does not use it"),
        ({"model": "groove", "attributes": {"loudness": 1}}, 400, "not an attribute of this checkpoint"),
        ({"model": "best", "format": "wav"}, 400, "format = 'wav'"),
        ({"model": "best", "num_files": 2, "format": "midi"}, 400, "format midi is for one piece"),
        ({}, 400, "model: give the id of a listed model"),
    ],
)
def test_a_bad_request_is_one_line_naming_what_is_wrong(client, request_, status, words):
    assert words in error_of(client.post("/api/sample", json=request_), status)


def test_a_token_model_refuses_the_latent_tasks(client, tiny_groovae):
    a, b = tiny_groovae[1][:2]
    response = client.post("/api/interpolate", data=form({"model": "best"}, a=upload(a), b=upload(b)))
    assert "a lstm model has no latent space" in error_of(response, 400)


def test_one_request_at_a_time_uses_a_model(client, catalog):
    done = []
    lock = catalog.lock("best")
    lock.acquire()
    try:
        worker = threading.Thread(
            target=lambda: done.append(client.post("/api/sample", json={"model": "best", "max_steps": 5}).status_code)
        )
        worker.start()
        time.sleep(0.5)
        assert not done, "the request ran while another held the model"
        # another model is free meanwhile
        assert client.post("/api/sample", json={"model": "groove"}).status_code == 200
    finally:
        lock.release()
    worker.join(60)
    assert done == [200]


def test_a_studio_on_a_public_address_wants_its_token(catalog):
    client = create_app(catalog, token="s3cret").test_client()
    assert "token" in error_of(client.get("/api/models"), 401)
    assert client.get("/api/models", headers={"X-Studio-Token": "s3cret"}).status_code == 200
    assert client.get("/api/models?token=s3cret").status_code == 200
    assert client.get("/").status_code == 200  # the page itself holds nothing; it passes the token on
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")


def test_the_page_and_its_assets_are_served_by_the_studio_itself(client):
    page = client.get("/").get_data(as_text=True)
    for asset in ("/static/studio.css", "/static/studio.js", "/favicon.ico"):
        assert asset in page and client.get(asset).status_code == 200
    assert "http://" not in page and "https://" not in page
    for asset in ("studio.css", "studio.js"):
        text = client.get(f"/static/{asset}").get_data(as_text=True)
        assert "http://" not in text and "https://" not in text and "@import" not in text
    assert client.get("/static/../server.py").status_code == 404
    from midigen.params import DEFAULTS

    assert client.get("/api/defaults").get_json() == DEFAULTS["generate"]  # what the controls start at


def test_a_taken_port_is_one_clear_error(workspace):
    import socket

    from midigen.errors import ParamsError
    from midigen.studio import serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ParamsError, match=f"--host 127.0.0.1 --port {port}: Address already in use"):
            serve(workspace / "models", "127.0.0.1", port, "cpu")


def test_harmonize_wants_a_voices_model(client, chorale_paths):
    response = client.post("/api/harmonize", data=form({"model": "best"}, melody=upload(chorale_paths[0])))
    assert "representation = voices" in error_of(response, 400)
