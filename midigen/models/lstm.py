"""Embedding -> LSTM -> Linear next-token model that owns its own (batched) sampling."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from midigen.generation.sampling import sample_next


@dataclass
class LSTMConfig:
    vocab_size: int
    emb_dim: int = 256
    hidden_dim: int = 512
    num_layers: int = 2
    dropout: float = 0.2


class LSTMLM(nn.Module):
    kind = "lstm"

    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.emb_dim)
        self.lstm = nn.LSTM(
            config.emb_dim,
            config.hidden_dim,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_dim, config.vocab_size)

    def forward(self, x: torch.Tensor, state=None) -> tuple[torch.Tensor, tuple]:
        """x: (batch, time) ids -> logits (batch, time, vocab), LSTM state."""
        out, state = self.lstm(self.drop(self.embed(x)), state)
        return self.head(self.drop(out)), state

    def config_dict(self) -> dict:
        return asdict(self.config)

    @torch.no_grad()
    def generate(
        self,
        prompts: list[list[int]],
        max_steps: int,
        eos_id: int,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        greedy: bool = False,
    ) -> list[list[int]]:
        """Continue every prompt at once (one batch); each stops at eos_id or after max_steps new ids.

        Prompts may differ in length: they are fed left-aligned and each row starts sampling as
        soon as its own prompt is used up.
        """
        self.eval()
        device = next(self.parameters()).device
        batch = len(prompts)
        lengths = torch.tensor([len(p) for p in prompts], device=device)
        max_len = int(lengths.max())
        prompt = torch.zeros(batch, max_len, dtype=torch.long, device=device)
        for i, p in enumerate(prompts):
            prompt[i, : len(p)] = torch.tensor(p, dtype=torch.long)
        # feed the common prefix in one call, then step token by token
        common = int(lengths.min())
        state = None
        logits = None
        if common > 1:
            _, state = self(prompt[:, : common - 1], state)
        x = prompt[:, common - 1 : common]
        live = torch.arange(batch, device=device)  # original row of each row still running
        produced = torch.zeros(batch, dtype=torch.long, device=device)
        pos = common - 1
        rows_log, ids_log = [], []
        while live.numel():
            logits, state = self(x, state)
            pos += 1
            nxt = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator, greedy)
            in_prompt = lengths[live] > pos
            if in_prompt.any():
                nxt = torch.where(in_prompt, prompt[live, min(pos, max_len - 1)], nxt)
            sampling = ~in_prompt
            rows_log.append(live[sampling])
            ids_log.append(nxt[sampling])
            produced[live] += sampling.long()
            finished = sampling & ((nxt == eos_id) | (produced[live] >= max_steps))
            if finished.any():  # drop finished rows so the batch only computes what is still wanted
                keep = ~finished
                live, nxt = live[keep], nxt[keep]
                state = tuple(s[:, keep] for s in state)
            x = nxt.unsqueeze(1)
        rows = torch.cat(rows_log).cpu()
        ids = torch.cat(ids_log).cpu()
        order = torch.sort(rows, stable=True).indices  # log is in step order: keep it per row
        per_row = torch.split(ids[order], torch.bincount(rows, minlength=batch).tolist())
        return [list(p) + t.tolist() for p, t in zip(prompts, per_row, strict=True)]
