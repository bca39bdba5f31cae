"""LSTMLM.generate (one batch for all prompts) and the self-describing, weights-only checkpoints."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from midigen import models, representations
from midigen.errors import DataError
from midigen.evaluation.lm_eval import evaluate_loss
from midigen.models.lstm import LSTMLM, LSTMConfig
from midigen.representations import BOS, EOS
from midigen.training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("torch_one_thread")

VOCAB = 24


def tiny_lstm(seed: int = 0, vocab: int = VOCAB) -> LSTMLM:
    torch.manual_seed(seed)
    return LSTMLM(LSTMConfig(vocab_size=vocab, emb_dim=16, hidden_dim=32, num_layers=1, dropout=0.0)).eval()


def reference_greedy(model: LSTMLM, prompt: list[int], max_steps: int, eos: int) -> list[int]:
    """Greedy decoding the slow way: rerun the whole sequence for every new token."""
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(max_steps):
            logits, _ = model(torch.tensor([seq]))
            nxt = int(logits[0, -1].argmax())
            seq.append(nxt)
            if nxt == eos:
                break
    return seq


PROMPTS = [[BOS], [BOS, 5, 9, 7, 11], [BOS, 8], [BOS, 13, 4, 6]]


def test_greedy_batch_equals_each_prompt_continued_alone():
    model = tiny_lstm()
    batch = model.generate(PROMPTS, max_steps=25, eos_id=EOS, greedy=True)
    alone = [model.generate([p], max_steps=25, eos_id=EOS, greedy=True)[0] for p in PROMPTS]
    assert batch == alone


def test_greedy_batch_equals_a_step_by_step_reference_decoder():
    model = tiny_lstm(seed=1)
    batch = model.generate(PROMPTS, max_steps=20, eos_id=EOS, greedy=True)
    assert batch == [reference_greedy(model, p, 20, EOS) for p in PROMPTS]


def test_generate_with_the_prompt_batch_in_any_order_gives_the_same_rows():
    model = tiny_lstm(seed=2)
    forward = model.generate(PROMPTS, max_steps=15, eos_id=EOS, greedy=True)
    backward = model.generate(PROMPTS[::-1], max_steps=15, eos_id=EOS, greedy=True)
    assert backward[::-1] == forward


def eos_prone_model(p_eos: float) -> LSTMLM:
    """A model whose next token is nearly uniform, with <EOS> at about p_eos."""
    model = tiny_lstm(seed=3)
    with torch.no_grad():
        model.head.weight.mul_(0.01)
        model.head.bias.zero_()
        model.head.bias[EOS] = float(np.log(p_eos * (VOCAB - 1) / (1 - p_eos)))
    return model


def test_every_row_stops_at_its_first_eos_or_after_max_steps_new_tokens():
    model = eos_prone_model(p_eos=0.03)  # about 30% of the rows see no <EOS> in 40 steps
    max_steps = 40
    prompts = [[BOS] + [5 + i % 7] * (i % 5) for i in range(64)]
    gen = torch.Generator().manual_seed(0)
    out = model.generate(prompts, max_steps=max_steps, eos_id=EOS, generator=gen)
    stopped_at_eos = reached_max = 0
    for prompt, seq in zip(prompts, out, strict=True):
        new = seq[len(prompt) :]
        assert 1 <= len(new) <= max_steps
        assert EOS not in new[:-1], "a row went on after its <EOS>"
        if new[-1] == EOS:
            stopped_at_eos += 1
        else:
            assert len(new) == max_steps, "a row stopped early without <EOS>"
            reached_max += 1
    # the batch must exercise both ways of ending (otherwise this test proves little)
    assert stopped_at_eos >= 3 and reached_max >= 3, (stopped_at_eos, reached_max)


class ChainLM(LSTMLM):
    """A stand-in model whose next token is fixed by the last one: <BOS> -> 3 -> 4 -> ... -> 15 -> <EOS>.

    It keeps LSTMLM.generate but replaces the network, so the expected output is known exactly."""

    def __init__(self):
        super().__init__(LSTMConfig(vocab_size=VOCAB, emb_dim=4, hidden_dim=4, num_layers=1, dropout=0.0))
        nxt = torch.full((VOCAB,), EOS)
        nxt[BOS] = 3
        nxt[3:15] = torch.arange(4, 16)
        self.table = torch.nn.functional.one_hot(nxt, VOCAB).float() * 20.0

    def forward(self, x, state=None):
        _, state = super().forward(x, state)  # a real LSTM state, so generate may slice it per row
        return self.table[x], state


def chain(first: int, last: int = 15) -> list[int]:
    return list(range(first, last + 1))


def test_each_row_continues_its_own_prompt_and_ends_at_eos_or_max_steps_independently():
    model = ChainLM()
    prompts = [[BOS], [BOS, 12], [BOS, 5, 6, 7, 8, 9, 10], [BOS, 14, 15]]
    out = model.generate(prompts, max_steps=8, eos_id=EOS, greedy=True)
    assert out == [
        [BOS, *chain(3, 10)],  # 8 new tokens, no <EOS> yet: cut at max_steps
        [BOS, 12, *chain(13), EOS],
        [BOS, *chain(5, 10), *chain(11), EOS],
        [BOS, 14, 15, EOS],  # only <EOS> is new
    ]
    # sampling from the same one-hot table gives the same continuations
    sampled = model.generate(prompts, 8, EOS, temperature=1.0, top_k=5, generator=torch.Generator().manual_seed(0))
    assert sampled == out


def test_prompts_of_different_lengths_are_kept_as_prefixes_when_sampling():
    model = tiny_lstm(seed=5)
    prompts = [[BOS], [BOS, 3, 4, 5, 6, 7, 8, 9, 10, 11], [BOS, 20], [BOS, 12, 12, 12, 12]]
    gen = torch.Generator().manual_seed(3)
    out = model.generate(prompts, max_steps=12, eos_id=EOS, temperature=1.0, top_k=10, top_p=0.9, generator=gen)
    assert len(out) == len(prompts)
    for prompt, seq in zip(prompts, out, strict=True):
        assert seq[: len(prompt)] == prompt
        assert 1 <= len(seq) - len(prompt) <= 12
        assert all(0 <= t < VOCAB for t in seq)


def test_sampled_generation_is_reproducible_with_the_same_seed():
    model = tiny_lstm(seed=6)

    def run(seed):
        return model.generate([[BOS]] * 4, 30, EOS, top_k=8, generator=torch.Generator().manual_seed(seed))

    first = run(1)
    assert first == run(1)
    assert first != run(2)
    assert len({tuple(s) for s in first}) > 1, "identical prompts should still give different rows"


# -- checkpoints ------------------------------------------------------------------------------


def payload(model: LSTMLM, rep) -> dict:
    return {
        "format": 1,
        "model": {"kind": "lstm", **model.config_dict()},
        "model_state": model.state_dict(),
        "representation": rep.config(),
        "vocab": rep.vocab,
        "epoch": 3,
        "history": [{"epoch": 1, "val_loss": 1.5}],
    }


def test_save_and_load_checkpoint_round_trip_rebuilds_the_same_model(tmp_path, event_rep):
    model = tiny_lstm(seed=7, vocab=len(event_rep.vocab))
    path = tmp_path / "sub" / "model.pt"
    save_checkpoint(path, payload(model, event_rep))
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"], "no temporary file may be left"
    # the file holds tensors and plain data only: plain torch.load with weights_only=True reads it
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["vocab"] == event_rep.vocab
    ckpt = load_checkpoint(path)
    assert ckpt["representation"] == event_rep.config()
    assert ckpt["history"] == [{"epoch": 1, "val_loss": 1.5}]
    rebuilt = model_from_checkpoint(ckpt).eval()
    assert isinstance(rebuilt, LSTMLM) and rebuilt.config == model.config
    x = torch.randint(0, len(event_rep.vocab), (3, 17), generator=torch.Generator().manual_seed(0))
    assert torch.equal(rebuilt(x)[0], model(x)[0])


def test_a_checkpoint_written_by_train_describes_itself_and_rebuilds_the_best_model(
    trained_run, event_rep, chorale_streams
):
    out_dir, result, params = trained_run
    best_path = out_dir / "best.pt"
    assert result.best_path == best_path
    ckpt = load_checkpoint(best_path)
    assert ckpt["model"] == {
        "kind": "lstm",
        "vocab_size": len(event_rep.vocab),
        **{k: params["model"][k] for k in ("emb_dim", "hidden_dim", "num_layers", "dropout")},
    }
    assert ckpt["vocab"] == event_rep.vocab
    rep = representations.from_config(ckpt["representation"])
    assert rep.config() == event_rep.config() and rep.vocab == event_rep.vocab

    model = model_from_checkpoint(ckpt).eval()
    same = models.family("lstm").build(params["model"], event_rep)
    same.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True)["model_state"])
    same.eval()
    x = torch.from_numpy(chorale_streams[1][:64]).unsqueeze(0)
    assert torch.equal(model(x)[0], same(x)[0])
    # the weights are those of the best epoch: they reproduce its validation loss
    val_loss = evaluate_loss(model, chorale_streams[1], params["train"]["seq_len"], 8, torch.device("cpu"))
    assert round(val_loss, 5) == pytest.approx(result.history.best()["val_loss"], abs=2e-5)


def test_last_checkpoint_loads_weights_only_with_optimizer_and_sampler_state(trained_run):
    out_dir, result, params = trained_run
    ckpt = load_checkpoint(out_dir / "last.pt")
    assert ckpt["epoch"] == params["train"]["epochs"]
    assert {"optimizer_state", "sampler_state", "torch_rng", "run_fingerprint"} <= set(ckpt)
    assert [r["epoch"] for r in ckpt["history"]] == [r["epoch"] for r in result.history.rows]


class Arbitrary:
    """Any user class: a weights-only load must refuse to rebuild it."""

    def __init__(self):
        self.value = 42


class Sneaky:
    """Unpickling this would create a file: the checkpoint loader must never run it."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize(
    "kind", ["random_bytes", "empty", "truncated", "arbitrary_object", "code", "plain_pickle", "list", "no_weights"]
)
def test_load_checkpoint_rejects_anything_but_a_midigen_checkpoint_with_data_error(tmp_path, kind, event_rep):
    path = tmp_path / f"{kind}.pt"
    marker = tmp_path / "code_ran"
    good = payload(tiny_lstm(vocab=len(event_rep.vocab)), event_rep)
    if kind == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        save_checkpoint(path, good)
        path.write_bytes(path.read_bytes()[:500])
    elif kind == "arbitrary_object":
        torch.save({**good, "extra": Arbitrary()}, path)
    elif kind == "code":
        torch.save({**good, "extra": Sneaky(marker)}, path)
    elif kind == "plain_pickle":
        path.write_bytes(pickle.dumps({"model": {"kind": "lstm"}, "model_state": Arbitrary()}, protocol=2))
    elif kind == "list":
        torch.save([1, 2, 3], path)
    elif kind == "no_weights":
        torch.save({"model": good["model"], "vocab": good["vocab"]}, path)
    with pytest.raises(DataError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    # the CLI and the stages print it as `error: <message>`: one plain line (torch's own message
    # for a refused object spans many lines with terminal colour codes)
    assert "\n" not in message and "\x1b" not in message, message
    assert not marker.exists(), "loading a checkpoint ran code stored in it"


def test_load_checkpoint_of_a_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_a_checkpoint_of_another_format_version_is_refused_naming_the_file(tmp_path, event_rep):
    path = tmp_path / "old.pt"
    save_checkpoint(path, {**payload(tiny_lstm(vocab=len(event_rep.vocab)), event_rep), "format": 0})
    with pytest.raises(DataError, match=r"old\.pt: checkpoint format 0; this midigen reads format 1"):
        load_checkpoint(path)


def test_a_checkpoint_trained_on_other_tokens_than_the_store_is_refused(tmp_path, event_rep):
    from midigen.representations import EventRepresentation
    from midigen.training.checkpoint import load_model

    path = tmp_path / "model.pt"
    save_checkpoint(path, payload(tiny_lstm(vocab=len(event_rep.vocab)), event_rep))
    assert load_model(path, "cpu", event_rep).rep.vocab == event_rep.vocab
    other = EventRepresentation(0.05, 100, 8, event_rep.pitch_min, event_rep.pitch_max)  # velocity tokens
    with pytest.raises(DataError, match=r"model\.pt: trained on 'events' tokens with other settings"):
        load_model(path, "cpu", other)
