"""The transformer family: the key/value cache gives the logits of the full sequence (also past
the context, where both slide the same window), the batched sampler runs it unchanged (rows
leave, grammar masks, primers), it trains in the one loop and samples from the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_params
from test_model import reference_greedy

from midigen.errors import ParamsError
from midigen.generation.sampling import generate_tokens
from midigen.models import family
from midigen.models.transformer import TransformerConfig, TransformerLM
from midigen.params import DEFAULTS, PRESETS, validate
from midigen.representations import BOS, EOS

TINY_TRANSFORMER = {
    "kind": "transformer",
    "layers": 2,
    "heads": 2,
    "d_model": 16,
    "d_ff": 32,
    "context": 32,
    "position": "rotary",
}


def tiny(position: str = "rotary", context: int = 12, vocab: int = 40, seed: int = 0) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(TransformerConfig(vocab, 16, 2, 2, 32, context, 0.1, position)).eval()


def stepwise(model: TransformerLM, x: torch.Tensor, first: int, chunk: int = 1) -> torch.Tensor:
    """The logits of x fed as the sampler feeds it: `first` ids at once, then `chunk` at a time."""
    logits, state = model(x[:, :first])
    out = [logits]
    for t in range(first, x.shape[1], chunk):
        step, state = model(x[:, t : t + chunk], state)
        out.append(step)
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("position", ["rotary", "alibi"])
def test_cached_step_by_step_logits_equal_the_full_sequence_logits(position, torch_one_thread):
    model = tiny(position)
    x = torch.randint(3, 40, (3, 12), generator=torch.Generator().manual_seed(1))  # exactly the context
    with torch.no_grad():
        full, _ = model(x)
        for first in (1, 5):
            assert torch.allclose(stepwise(model, x, first), full, atol=1e-5, rtol=0)
    assert model(x)[1] is None  # with gradients (training) no cache is built


@pytest.mark.parametrize("position", ["rotary", "alibi"])
def test_past_the_context_the_cache_slides_the_same_window_as_the_full_pass(position, torch_one_thread):
    model = tiny(position, context=6)
    x = torch.randint(3, 40, (2, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full, _ = model(x)
        cached = stepwise(model, x, 3)
        chunked = stepwise(model, x, 2, chunk=4)  # several new ids over a cache that has wrapped
        _, state = model(x)
    assert torch.allclose(cached, full, atol=1e-5, rtol=0)
    assert torch.allclose(chunked, full, atol=1e-5, rtol=0)
    assert state.values[0].shape[2] == 6 and state.pos == 20  # the last `context` positions kept
    # the window really limits what a token sees: the last logits do not depend on token 0
    changed = x.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 40
    with torch.no_grad():
        assert torch.allclose(model(changed)[0][:, -1], full[:, -1], atol=1e-6)
        assert not torch.allclose(model(changed)[0][:, 3], full[:, 3], atol=1e-6)


def test_the_batched_sampler_with_the_cache_decodes_like_the_uncached_model(torch_one_thread):
    model = tiny(context=10)
    with torch.no_grad():  # a strong <EOS> after id 7, so rows end at different steps and leave the batch
        model.embed.weight[7] += 2.0 * model.embed.weight[EOS] / model.embed.weight[EOS].norm()
    prompts = [[BOS], [BOS, 7, 9], [BOS, 11, 4, 5, 6, 30, 31, 32, 33, 34, 12]]  # the last is past the context
    out = generate_tokens(model, prompts, 25, EOS, greedy=True)
    assert out == [reference_greedy(model, p, 25, EOS) for p in prompts]  # no cache: the whole sequence each step


def test_grammar_masks_and_primers_work_for_the_transformer(chorale_ids, event_rep, torch_one_thread):
    from midigen.generation.grammar import GrammarLimits

    torch.manual_seed(0)
    model = family("transformer").build({**DEFAULTS["model"], **TINY_TRANSFORMER}, event_rep).eval()
    grammar = event_rep.grammar(GrammarLimits(max_note_beats=2.0, max_voices=2))
    prompt = chorale_ids[0][:9].tolist()
    gen = torch.Generator().manual_seed(3)
    out = generate_tokens(model, [prompt] * 4, 60, EOS, 1.0, 0, 1.0, generator=gen, grammar=grammar)
    for seq in out:
        assert seq[:9] == prompt
        state = grammar.start(1, torch.device("cpu"))
        for col, i in enumerate(seq[1:], start=1):
            if col >= 9:  # every sampled id was legal where it was sampled
                assert bool(grammar.allowed(state)[0, i]), (col, event_rep.vocab[i])
            state = grammar.advance(state, torch.tensor([i]))


def test_params_refuse_a_window_longer_than_the_context_and_heads_that_do_not_divide():
    fam = family("transformer")
    params = {"model": {**DEFAULTS["model"], **TINY_TRANSFORMER}, "train": dict(DEFAULTS["train"])}
    params["train"]["seq_len"] = 64
    with pytest.raises(ParamsError, match="train.seq_len = 64 is longer than model.context = 32"):
        fam.check_params(params)
    params["train"]["seq_len"], params["model"]["heads"] = 32, 3
    with pytest.raises(ParamsError, match="model.d_model = 16 must split into model.heads = 3"):
        fam.check_params(params)


@pytest.mark.parametrize("preset", ["transformer_cpu", "transformer_gpu"])
def test_transformer_presets_set_the_kind_and_keep_what_was_changed(preset):
    raw = {section: dict(values) for section, values in DEFAULTS.items()}
    raw["model"]["preset"] = preset
    raw["train"]["lr"] = 0.002
    p = validate(raw)
    assert p["model"]["kind"] == "transformer"
    for key, value in PRESETS[preset]["model"].items():
        assert p["model"][key] == value
    assert p["train"]["lr"] == 0.002  # set by hand: the preset leaves it
    assert p["train"]["seq_len"] <= p["model"]["context"]  # the preset trains as it is


def test_a_transformer_trains_in_the_one_loop_and_samples_from_the_cli(
    tmp_path, chorale_streams, event_rep, torch_one_thread, capsys
):
    from midigen.cli import main
    from midigen.training.loop import train_model

    train, val = chorale_streams
    params = tiny_params(TINY_TRANSFORMER, epochs=3, lr=0.01)
    result = train_model(event_rep, train, val, params, tmp_path / "run", "fp")
    rows = result.history.rows
    assert rows[-1]["val_loss"] < rows[0]["val_loss"] - 0.3, rows
    assert rows[-1]["val_loss"] < np.log(len(event_rep.vocab)) - 0.8  # well below a uniform guess

    out = tmp_path / "samples"
    args = ["sample", "--checkpoint", str(result.best_path), "--num-files", "3", "--max-steps", "300"]
    assert main([*args, "--device", "cpu", "--top-k", "10", "--out", str(out)]) == 0
    mids = sorted(out.glob("sample_*.mid"))
    assert len(mids) == 3
    for txt in out.glob("sample_*.txt"):
        tokens = txt.read_text(encoding="utf-8").split()
        assert tokens[0] == "<BOS>" and 2 <= len(tokens) <= 301


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_on_cuda_one_training_step_and_one_cached_sampling_step_run_in_bf16(event_rep):
    from midigen.training.devices import autocast

    device = torch.device("cuda")
    model = tiny(context=16).to(device).train()
    x = torch.randint(3, 40, (4, 16), device=device)
    with autocast(device):
        logits, _ = model(x)
    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, 40), x.roll(-1, 1).reshape(-1))
    loss.backward()
    assert torch.isfinite(loss) and model.embed.weight.grad is not None
    model.eval()
    with torch.no_grad(), autocast(device):
        full, _ = model(x)
        _, state = model(x[:, :15])
        step, _ = model(x[:, 15:], state)
    assert torch.allclose(step[:, 0].float(), full[:, 15].float(), atol=0.1)  # bf16: loose
