"""Next-token sampling with temperature, top-k and nucleus (top-p) filtering, for a batch."""

from __future__ import annotations

import torch

from midigen.parallel import progress


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set logits outside the top-k / the smallest set with cumulative probability >= top_p to -inf."""
    logits = logits.clone()
    if top_k and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits[logits < kth] = float("-inf")
    if top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, descending=True, dim=-1)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        # drop a token when the tokens before it already reach top_p (the first always stays)
        drop_sorted = (cum - torch.softmax(sorted_logits, dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
        logits[drop] = float("-inf")
    return logits


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    greedy: bool = False,
) -> torch.Tensor:
    """logits (batch, vocab) -> ids (batch,)."""
    if greedy or temperature <= 0:
        return logits.argmax(-1)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


@torch.no_grad()
def generate_tokens(
    model: torch.nn.Module,
    prompts: list[list[int]],
    max_steps: int,
    eos_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    greedy: bool = False,
    grammar=None,
) -> list[list[int]]:
    """Continue every prompt at once (one batch); each stops at eos_id or after max_steps new ids.

    For any next-token model that maps (ids (B, T), state) to (logits (B, T, vocab), state) and
    has keep_rows(state, keep). Prompts may differ in length: they are fed left-aligned and each
    row starts sampling as soon as its own prompt is used up. A row that has finished leaves the
    batch, so the batch only computes what is still wanted.

    grammar (a midigen.generation.grammar.Grammar): the ids each row may take next are masked
    before sampling; every id a row is fed, prompt ids included, advances its state.

    A progress bar on stderr counts the steps (at most the longest prompt plus max_steps) and
    the rows still running.
    """
    model.eval()
    device = next(iter(model.state_dict().values())).device
    batch = len(prompts)
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    max_len = int(lengths.max())
    prompt = torch.zeros(batch, max_len, dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        prompt[i, : len(p)] = torch.tensor(p, dtype=torch.long)
    # feed the common prefix in one call, then step token by token
    common = int(lengths.min())
    state = None
    if common > 1:
        _, state = model(prompt[:, : common - 1], state)
    rules = grammar.start(batch, device) if grammar is not None else None
    for col in range(common if grammar is not None else 0):
        rules = grammar.advance(rules, prompt[:, col])
    x = prompt[:, common - 1 : common]
    live = torch.arange(batch, device=device)  # original row of each row still running
    produced = torch.zeros(batch, dtype=torch.long, device=device)
    pos = common - 1
    rows_log, ids_log = [], []
    bar = progress(None, total=max_len - common + max_steps, desc="sampling", unit="step")
    while live.numel():
        logits, state = model(x, state)
        pos += 1
        bar.update()
        if bar.n % 50 == 0:
            bar.set_postfix(rows=int(live.numel()), refresh=False)
        last = logits[:, -1, :]
        if rules is not None:
            last = last.masked_fill(~grammar.allowed(rules), float("-inf"))
        nxt = sample_next(last, temperature, top_k, top_p, generator, greedy)
        in_prompt = lengths[live] > pos
        if in_prompt.any():
            nxt = torch.where(in_prompt, prompt[live, min(pos, max_len - 1)], nxt)
        sampling = ~in_prompt
        rows_log.append(live[sampling])
        ids_log.append(nxt[sampling])
        produced[live] += sampling.long()
        if rules is not None:
            rules = grammar.advance(rules, nxt)
        finished = sampling & ((nxt == eos_id) | (produced[live] >= max_steps))
        if finished.any():
            keep = ~finished
            live, nxt = live[keep], nxt[keep]
            state = model.keep_rows(state, keep)
            if rules is not None:
                rules = grammar.keep_rows(rules, keep)
        x = nxt.unsqueeze(1)
    bar.close()
    rows = torch.cat(rows_log).cpu()
    ids = torch.cat(ids_log).cpu()
    order = torch.sort(rows, stable=True).indices  # log is in step order: keep it per row
    per_row = torch.split(ids[order], torch.bincount(rows, minlength=batch).tolist())
    return [list(p) + t.tolist() for p, t in zip(prompts, per_row, strict=True)]


def sample_request(
    model: torch.nn.Module, prompts: list[list[int]], max_steps: int, eos_id: int, request, grammar=None
):
    """generate_tokens with a midigen.models.base.SampleRequest's controls (temperature, top_k,
    top_p, greedy) and a generator on the model's device seeded with request.seed."""
    device = next(iter(model.state_dict().values())).device
    gen = torch.Generator(device=device)
    gen.manual_seed(request.seed)
    return generate_tokens(
        model,
        prompts,
        max_steps,
        eos_id,
        request.temperature,
        request.top_k,
        request.top_p,
        generator=gen,
        greedy=request.greedy,
        grammar=grammar,
    )
