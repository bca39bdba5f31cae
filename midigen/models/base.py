"""The interface every model family implements, and what the token language models share.

A family says what differs between kinds of model; the one training loop
(midigen.training.loop), the generate and evaluate stages and the CLI do the rest:

- build: `build(model_params, rep)` and `from_config(config)` (a checkpoint's "model" entry);
- train: `data(split_data)` (train and val data in the family's layout), `batches(...)` (a
  reproducible sampler of training batches), `train_step(net, batch, step)` (the loss and the
  numbers to sum over an epoch), `validate(model, val)`, `epoch_row(...)`, `finish(...)` (what
  the best model adds to best.pt once training ends); a family that learns from counts instead
  of gradients sets `trains_by_gradient = False` and implements `fit`;
- generate: `sample(model, rep, request)` and `stage_outputs(...)` (what the generate stage writes);
- evaluate: `evaluate(model, rep, data, params, generated)` (the numbers of metrics/eval.json)
  and `summary_lines(result)`.

`layout` is the token-store layout the family reads ("sequence" or "windows", see
midigen.representations.base); `controls` are the sampling controls it honours, so the CLI
refuses the others instead of ignoring them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from midigen.errors import ParamsError
from midigen.generation.grammar import GrammarLimits
from midigen.representations import BOS, EOS, PAD, OutputContext, Representation

#: every sampling control the CLI knows (see SampleRequest)
CONTROLS = ("max_steps", "temperature", "top_k", "top_p", "greedy", "primer", "attribute")


@dataclass(frozen=True)
class SampleRequest:
    """What to sample: num pieces from `seed`; the rest as the generate params say."""

    num: int
    seed: int = 0
    temperature: float = 1.0
    max_steps: int = 2000
    top_k: int = 0
    top_p: float = 1.0
    greedy: bool = False
    #: a MIDI file whose tokens every piece continues
    primer: str | Path | None = None
    #: what the constrained sampler enforces (generate.constrained); None = unconstrained
    limits: GrammarLimits | None = None
    #: (name, amount) pairs: move z along the model's latent attribute vectors (MusicVAE)
    attributes: tuple[tuple[str, float], ...] = ()


@dataclass
class StepOutput:
    """One training step: the loss to back-propagate and what the epoch sums (already
    multiplied by `items`, so sums / items is the epoch's mean)."""

    loss: torch.Tensor
    sums: dict[str, float]
    items: int
    tokens: int


@dataclass
class Totals:
    """What an epoch has summed so far: StepOutput sums, items and tokens, and the optimizer
    steps taken (over the whole run)."""

    sums: dict[str, float]
    items: int
    tokens: int
    step: int


def context_from(generate_params: dict[str, Any]) -> OutputContext:
    """The output context the generate params ask for (tempo, key, program)."""
    return OutputContext(generate_params["tempo"], generate_params["key"], generate_params["program"])


def request_from(generate_params: dict[str, Any], **overrides: Any) -> SampleRequest:
    """The sample request of the generate params section, with overrides."""
    g = generate_params
    fields = {
        "num": g["num_files"],
        "seed": g["seed"],
        "temperature": g["temperature"],
        "max_steps": g["max_steps"],
        "top_k": g["top_k"],
        "top_p": g["top_p"],
        "limits": GrammarLimits(g["max_note_beats"], g["max_voices"], g["tempo"], g["min_beats"])
        if g["constrained"]
        else None,
    }
    fields.update(overrides)
    return SampleRequest(**fields)


class Family:
    """What one kind of model (model.kind) supplies; see the module docstring."""

    name: str = ""
    layout: str = "sequence"
    controls: frozenset[str] = frozenset()
    #: what the train stage counts when it announces the data ("tokens", "windows")
    unit: str = "tokens"
    trains_by_gradient: bool = True
    #: True: the model encodes pieces into a latent space (interpolate / reconstruct work)
    has_latent: bool = False

    # -- build ----------------------------------------------------------------------------------

    def check_params(self, params: dict[str, Any]) -> None:
        """Raise ParamsError for params this family cannot use (beyond the schema's checks)."""

    def build(self, model_params: dict[str, Any], rep: Representation) -> nn.Module:
        raise NotImplementedError

    def config(self, model: nn.Module) -> dict[str, Any]:
        """What from_config needs to rebuild the model (stored in checkpoints)."""
        return model.config_dict()

    def from_config(self, config: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def vocab_size(self, config: dict[str, Any]) -> int:
        """How many token ids a model of this config reads and predicts."""
        return int(config["vocab_size"])

    # -- train ----------------------------------------------------------------------------------

    def data(self, split_data) -> tuple[Any, Any]:
        """(train, val) data of a midigen.data.dataset.SplitData in this family's layout."""
        raise NotImplementedError

    def batches(self, train: Any, params: dict[str, Any], rep: Representation, shard: tuple[int, int]):
        """A sampler with batch(), batches_per_epoch(), get_state() and set_state()."""
        raise NotImplementedError

    def train_step(self, net: nn.Module, batch: Any, step: int, params: dict[str, Any]) -> StepOutput:
        raise NotImplementedError

    def fit(self, model: nn.Module, train: Any, params: dict[str, Any]) -> Totals:
        """Families with trains_by_gradient = False: learn from `train` at once; returns the
        training numbers as an epoch's totals."""
        raise NotImplementedError

    def validate(self, model: nn.Module, val: Any, params: dict[str, Any], device: torch.device) -> dict[str, float]:
        raise NotImplementedError

    def finish(self, model: nn.Module, rep: Representation, train: Any, params: dict[str, Any], device) -> bool:
        """Called once after training with the best weights loaded: True when it changed what
        the model's config holds (best.pt is then written again)."""
        return False

    def epoch_row(self, totals: Totals, val: dict[str, float], params: dict[str, Any]) -> dict[str, Any]:
        """The fields of one row of the training history (train_loss, val_loss, ... ; the loop
        adds epoch, tokens_per_s and lr)."""
        raise NotImplementedError

    def postfix(self, totals: Totals, params: dict[str, Any]) -> dict[str, str]:
        """What the progress bar shows during an epoch."""
        return {"loss": f"{totals.sums['loss'] / max(1, totals.items):.3f}"}

    def epoch_line(self, row: dict[str, Any]) -> str:
        return (
            f"epoch {row['epoch']}: train {row['train_loss']:.4f} (ppl {row['train_perplexity']:.2f})  "
            f"val {row['val_loss']:.4f} (ppl {row['val_perplexity']:.2f})"
        )

    def checkpoint_extra(self, params: dict[str, Any]) -> dict[str, Any]:
        """Entries a checkpoint carries besides the common ones."""
        return {}

    # -- generate -------------------------------------------------------------------------------

    def sample(
        self, model: nn.Module, rep: Representation, request: SampleRequest, device: torch.device
    ) -> list[np.ndarray]:
        raise NotImplementedError

    def stage_outputs(
        self, model: nn.Module, rep: Representation, params: dict[str, Any], split_data, device: torch.device
    ) -> list[tuple[str, list[np.ndarray]]]:
        """What the generate stage writes: (file prefix, id sequences) in order."""
        return [("sample", self.sample(model, rep, request_from(params["generate"]), device))]

    def summary_line(self, count: dict[str, int]) -> str:
        return ", ".join(f"{n} {prefix}" for prefix, n in count.items())

    # -- evaluate -------------------------------------------------------------------------------

    def evaluate(
        self,
        model: nn.Module,
        rep: Representation,
        split_data,
        params: dict[str, Any],
        generated: Path,
        device,
        keys: list[list[int]] | None = None,
    ) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
        """(the numbers of metrics/eval.json, the set distance per feature). keys: the
        checkpoint's key shifts (midigen.data.keys.of_checkpoint), for what it writes as files."""
        raise NotImplementedError

    def summary_lines(self, result: dict[str, Any]) -> list[str]:
        """What the evaluate stage prints."""
        return []


class TokenLM(nn.Module):
    """What every next-token model shares: a dataclass `config`, and generate() through the
    batched sampler. A subclass implements forward(ids (B, T), state) -> (logits (B, T, vocab),
    state) and keep_rows(state, keep)."""

    config: Any

    def config_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self.config)

    def generate(self, prompts: list[list[int]], max_steps: int, eos_id: int, *args, **kwargs) -> list[list[int]]:
        """Continue every prompt at once: midigen.generation.sampling.generate_tokens (temperature,
        top_k, top_p, generator, greedy, grammar)."""
        from midigen.generation.sampling import generate_tokens

        return generate_tokens(self, prompts, max_steps, eos_id, *args, **kwargs)


class TokenLMFamily(Family):
    """Next-token language models over "sequence" stores (the LSTM, the n-gram baseline, ...):
    random windows of train.seq_len ids, cross-entropy, batched sampling from <BOS> or a primer,
    and the language-model evaluation (test NLL, accuracy, greedy vs sampled decoding).

    A model here maps ids (B, T) and a state to (logits (B, T, vocab), state) and has
    keep_rows(state, keep) for the sampler (midigen.generation.sampling.generate_tokens)."""

    layout = "sequence"
    # latent attribute vectors are MusicVAE's: a token model has no z to move
    controls = frozenset(CONTROLS) - {"attribute"}
    unit = "tokens"

    def data(self, split_data) -> tuple[Any, Any]:
        # memory-mapped views: memory stays flat however large the corpus
        return split_data.view("train"), split_data.view("val", fallbacks=("train",))

    #: whether its state may carry from one training batch to the next (train.stateful)
    stateful = False

    def batches(self, train: Any, params: dict[str, Any], rep: Representation, shard: tuple[int, int]):
        from midigen.data.windows import StreamSampler, WindowSampler

        tp = params["train"]
        if tp["stateful"] and not self.stateful:
            raise ParamsError(f"train.stateful = true is for model.kind = 'lstm' (this is {self.name!r})")
        sampler = StreamSampler if tp["stateful"] else WindowSampler
        return sampler(train, tp["seq_len"], tp["batch_size"], tp["seed"], tp["transpose"], rep, shard)

    def train_step(self, net: nn.Module, batch: Any, step: int, params: dict[str, Any]) -> StepOutput:
        from midigen.training.devices import autocast

        x, y = batch
        # train.stateful: each row continues the row of the batch before (StreamSampler), so the
        # state the model ended that batch with starts this one, cut off from its gradient
        carried = getattr(net, "carried_state", None) if params["train"]["stateful"] else None
        with autocast(x.device):
            logits, state = net(x, carried)
        if params["train"]["stateful"]:
            net.carried_state = tuple(s.detach() for s in state)
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=PAD)
        n_tok = int((y != PAD).sum())
        return StepOutput(loss, {"loss": loss.item() * n_tok}, n_tok, n_tok)

    def validate(self, model: nn.Module, val: Any, params: dict[str, Any], device: torch.device) -> dict[str, float]:
        from midigen.evaluation.lm_eval import evaluate_loss

        tp = params["train"]
        return {"loss": evaluate_loss(model, val, tp["seq_len"], tp["batch_size"] * 2, device)}

    def epoch_row(self, totals: Totals, val: dict[str, float], params: dict[str, Any]) -> dict[str, Any]:
        from midigen.training.loop import perplexity

        train_loss = totals.sums["loss"] / max(1, totals.items)
        return {
            "train_loss": round(train_loss, 5),
            "val_loss": round(val["loss"], 5),
            "train_perplexity": round(perplexity(train_loss), 4),
            "val_perplexity": round(perplexity(val["loss"]), 4),
        }

    def sample(
        self, model: nn.Module, rep: Representation, request: SampleRequest, device: torch.device
    ) -> list[np.ndarray]:
        """request.num pieces, each from <BOS> (or the primer's tokens) to <EOS> or max_steps."""
        from midigen.generation.sampling import sample_request

        prompt = [BOS]
        if request.primer is not None:
            ids = rep.encode(rep.read_piece(request.primer))
            prompt = ids[:-1].tolist()  # without <EOS>, so the model continues
        grammar = rep.grammar(request.limits) if request.limits is not None else None
        out = sample_request(model, [prompt] * request.num, request.max_steps, EOS, request, grammar)
        return [np.asarray(o, dtype=np.int64) for o in out]

    def evaluate(
        self,
        model: nn.Module,
        rep: Representation,
        split_data,
        params: dict[str, Any],
        generated: Path,
        device,
        keys: list[list[int]] | None = None,
    ) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
        from midigen.evaluation.lm_eval import evaluate_token_model

        return evaluate_token_model(self, model, rep, split_data, params, generated, device, keys=keys)

    def summary_lines(self, result: dict[str, Any]) -> list[str]:
        from midigen.evaluation.lm_eval import summary_lines

        return summary_lines(result)
