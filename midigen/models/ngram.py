"""The `ngram` family: an interpolated Kneser-Ney n-gram language model over token ids, as a
``torch.nn.Module``, trained from counts in seconds. A baseline beside the neural models: the same
token ids, generate and evaluate stages and checkpoints, so its test NLL is directly comparable.

Smoothing is *interpolated* Kneser-Ney (Chen & Goodman 1998, eq. 17) with one absolute discount per order:

    p_k(w | h) = max(c_k(h w) - D_k, 0) / c_k(h •)  +  gamma_k(h) * p_{k-1}(w | h')
    gamma_k(h) = D_k * N1+(h •) / c_k(h •)        (written sum_w min(c_k(h w), D_k) / c_k(h •), equal for D_k <= 1)

where h' is h without its oldest token, c_k are raw counts at the highest order and continuation counts
N1+(• h w) (the number of distinct tokens seen immediately left of ``h w``) at every lower order, and
p_0(w) = 1 / V, so every id has non-zero probability. A context never seen at order k (c_k(h •) = 0) backs off
fully: p_k(w | h) = p_{k-1}(w | h'). A context shorter than order - 1 (the start of a row) is scored with the
matching lower-order distribution p_{len(h)+1}, exactly as it appears inside the recursion.

Discounts: D_k is estimated per order from the count-of-counts of that order's counts, D_k = n1 / (n1 + 2 n2)
(Ney, Essen & Kneser 1994). When the estimate is degenerate (n1 = 0 or n2 = 0, e.g. a tiny corpus) the fixed
``discount`` argument is used for that order instead.

Units: ``forward`` returns natural-log probabilities (nats), float32, of shape (B, T, V). Tables are computed and
stored in float64 and held as registered buffers (sorted int64 key arrays, CSR offsets, per-entry probabilities),
never as dense V**k arrays, so ``state_dict`` round-trips through ``torch.save``/``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from midigen.models.base import TokenLMFamily, Totals

__all__ = ["FAMILY", "KneserNeyLM", "NgramFamily", "TokenStream"]

_INT64_MAX = np.iinfo(np.int64).max


class TokenStream(Protocol):
    """What ``KneserNeyLM.fit`` needs from a stream: a length and slicing to an int array (e.g. ``np.memmap``)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice) -> Any: ...


class KneserNeyLM(nn.Module):
    """Interpolated Kneser-Ney n-gram LM of order ``order`` over ids ``0 .. vocab_size - 1``.

    Call ``fit`` (or ``load_state_dict``) before ``forward``. The module has no parameters, only buffers.
    """

    def __init__(self, vocab_size: int, order: int = 4, discount: float = 0.75):
        """vocab_size: number of ids V; order: n of the n-gram (>= 1); discount: fallback absolute discount > 0."""
        super().__init__()
        if int(vocab_size) < 1:
            raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
        if int(order) < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        if not float(discount) > 0.0:
            raise ValueError(f"discount must be > 0, got {discount}")
        self.vocab_size = int(vocab_size)
        self.order = int(order)
        self.discount = float(discount)
        f64, i64, i32 = torch.float64, torch.int64, torch.int32
        # p_1 over the vocabulary (empty until fitted); one discount per order (index k - 1 for order k)
        self.register_buffer("p1", torch.empty(0, dtype=f64))
        self.register_buffer("discounts", torch.full((self.order,), self.discount, dtype=f64))
        # keys_j: sorted distinct j-grams seen in training, encoded rank(first j - 1 tokens) * V + last token,
        # so the position of a j-gram in keys_j is its rank (the contexts of order j + 1 are indexed by it).
        for j in range(2, self.order):
            self.register_buffer(f"keys_{j}", torch.empty(0, dtype=i64))
        # order k >= 2, per context rank: gamma_k, and CSR offsets into the entries (w, discounted probability)
        for k in range(2, self.order + 1):
            self.register_buffer(f"gamma_{k}", torch.empty(0, dtype=f64))
            self.register_buffer(f"offsets_{k}", torch.zeros(1, dtype=i64))
            self.register_buffer(f"ent_w_{k}", torch.empty(0, dtype=i32))
            self.register_buffer(f"ent_alpha_{k}", torch.empty(0, dtype=f64))

    # ------------------------------------------------------------------ configuration / persistence

    def config_dict(self) -> dict:
        """The constructor arguments: ``KneserNeyLM(**model.config_dict())`` builds an unfitted twin."""
        return {"vocab_size": self.vocab_size, "order": self.order, "discount": self.discount}

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, order={self.order}, discount={self.discount}"

    @property
    def is_fitted(self) -> bool:
        """True once ``fit`` or ``load_state_dict`` (of a fitted model) has filled the tables."""
        return self.p1.numel() == self.vocab_size

    def _table_names(self) -> list[str]:
        names = [f"keys_{j}" for j in range(2, self.order)]
        for k in range(2, self.order + 1):
            names += [f"gamma_{k}", f"offsets_{k}", f"ent_w_{k}", f"ent_alpha_{k}"]
        return names

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        # Data-dependent buffers: resize ours to the incoming shape so the default copy succeeds.
        # p1 may only be empty or (V,); anything else is left to the default "size mismatch" error.
        resizable = self._table_names()
        p1_src = state_dict.get(prefix + "p1")
        if p1_src is not None and tuple(p1_src.shape) in ((0,), (self.vocab_size,)):
            resizable.append("p1")
        for name in resizable:
            src = state_dict.get(prefix + name)
            cur = self._buffers.get(name)
            if src is not None and cur is not None and tuple(src.shape) != tuple(cur.shape):
                self._buffers[name] = torch.empty(tuple(src.shape), dtype=cur.dtype, device=cur.device)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    # ------------------------------------------------------------------ fitting

    def fit(self, stream: TokenStream | np.ndarray, pad_id: int | None = 0) -> KneserNeyLM:
        """Count n-grams of orders 1..order over ``stream`` and build the smoothed tables; returns self.

        stream: 1-D int ids in [0, V) (a numpy array or anything with ``len`` and slicing, e.g. ``np.memmap``);
        pieces may sit back to back, n-grams crossing piece boundaries are counted. n-grams containing
        ``pad_id`` are not counted (pass None to count everything). Counting is vectorised numpy.
        """
        V, order = self.vocab_size, self.order
        n = len(stream)
        shape = getattr(stream, "shape", (n,))
        if len(shape) != 1:
            raise ValueError(f"stream must be 1-D, got shape {tuple(shape)}")
        tokens = np.ascontiguousarray(np.asarray(stream[0:n]), dtype=np.int64).reshape(-1)
        if tokens.shape[0] != n:
            raise ValueError(f"stream[0:{n}] returned {tokens.shape[0]} ids")
        if n and (tokens.min() < 0 or tokens.max() >= V):
            raise ValueError(f"stream ids must lie in [0, {V}), got [{tokens.min()}, {tokens.max()}]")
        if n and n * V >= _INT64_MAX:
            raise ValueError(f"stream of {n} ids is too long for vocab_size {V} (rank * V must fit in int64)")

        valid1 = np.ones(n, dtype=bool) if pad_id is None else tokens != int(pad_id)
        # ranks[k][i]: rank of the k-gram starting at i among distinct valid k-grams (-1 if it holds pad)
        ranks: dict[int, np.ndarray] = {1: np.where(valid1, tokens, -1)}
        keys: dict[int, np.ndarray] = {}
        sizes: dict[int, int] = {1: V}
        for k in range(2, order + 1):
            m = max(n - k + 1, 0)
            valid = (ranks[k - 1][:m] >= 0) & valid1[k - 1 : k - 1 + m]
            key = ranks[k - 1][:m][valid] * V + tokens[k - 1 : k - 1 + m][valid]
            uniq, inv = np.unique(key, return_inverse=True)
            rk = np.full(m, -1, dtype=np.int64)
            rk[valid] = inv.reshape(-1)
            ranks[k], keys[k], sizes[k] = rk, uniq, len(uniq)

        device = self.p1.device
        discounts = np.full(order, self.discount, dtype=np.float64)
        for k in range(1, order + 1):
            if k == order:  # highest order: raw counts
                r = ranks[k][ranks[k] >= 0]
                counts = np.bincount(r, minlength=sizes[k]).astype(np.float64)
            else:  # lower orders: continuation counts N1+(• g) over distinct (k+1)-grams (v g)
                nxt = ranks[k + 1]
                pos = np.flatnonzero(nxt >= 0)
                suffix_of = np.zeros(sizes[k + 1], dtype=np.int64)
                suffix_of[nxt[pos]] = ranks[k][pos + 1]
                counts = np.bincount(suffix_of, minlength=sizes[k]).astype(np.float64)
            D = self._estimate_discount(counts)
            discounts[k - 1] = D
            if k == 1:
                ctx, w, n_ctx = np.zeros(V, dtype=np.int64), np.arange(V, dtype=np.int64), 1
            else:
                ctx, w, n_ctx = keys[k] // V, keys[k] % V, sizes[k - 1]
            denom = np.bincount(ctx, weights=counts, minlength=n_ctx)
            removed = np.bincount(ctx, weights=np.minimum(counts, D), minlength=n_ctx)
            seen = denom > 0
            safe = np.where(seen, denom, 1.0)
            gamma = np.where(seen, removed / safe, 1.0)
            alpha = np.maximum(counts - D, 0.0) / safe[ctx]
            if k == 1:
                self.p1 = torch.from_numpy(alpha + gamma[0] / V).to(device)
                continue
            keep = alpha > 0
            ent_ctx = ctx[keep]
            offsets = np.searchsorted(ent_ctx, np.arange(n_ctx + 1), side="left").astype(np.int64)
            setattr(self, f"gamma_{k}", torch.from_numpy(gamma).to(device))
            setattr(self, f"offsets_{k}", torch.from_numpy(offsets).to(device))
            setattr(self, f"ent_w_{k}", torch.from_numpy(w[keep].astype(np.int32)).to(device))
            setattr(self, f"ent_alpha_{k}", torch.from_numpy(np.ascontiguousarray(alpha[keep])).to(device))
        for j in range(2, order):
            setattr(self, f"keys_{j}", torch.from_numpy(keys[j]).to(device))
        self.discounts = torch.from_numpy(discounts).to(device)
        return self

    def _estimate_discount(self, counts: np.ndarray) -> float:
        """D = n1 / (n1 + 2 n2) from the count-of-counts; the fixed ``discount`` when n1 or n2 is zero."""
        n1 = int(np.count_nonzero(counts == 1))
        n2 = int(np.count_nonzero(counts == 2))
        if n1 == 0 or n2 == 0:
            return self.discount
        return n1 / (n1 + 2.0 * n2)

    # ------------------------------------------------------------------ scoring

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Next-id log-probabilities after every position of x, and the context to carry into the next call.

        x: (B, T) long ids. state: None or (B, order - 1) long, the previous call's last ids, -1 meaning "no
        token". logits[b, t] (float32, nats, over V ids) = log p(. | last order - 1 ids of state + x ending at
        x[b, t]). Ids outside [0, V) (e.g. -1) in x or state break the context: contexts reaching past them use
        the lower orders, like the start of a row. Returns (logits (B, T, V), new_state (B, order - 1)).
        Vectorised over all B * T positions; builds a transient (B * T, V) float64 table.
        """
        if not self.is_fitted:
            raise RuntimeError("KneserNeyLM is not fitted: call fit() or load_state_dict() first")
        if x.dim() != 2:
            raise ValueError(f"x must be (batch, time), got shape {tuple(x.shape)}")
        V, S = self.vocab_size, self.order - 1
        device = self.p1.device
        B, T = x.shape
        x = x.to(device=device, dtype=torch.long)
        if state is None:
            state = torch.full((B, S), -1, dtype=torch.long, device=device)
        else:
            if tuple(state.shape) != (B, S):
                raise ValueError(f"state must be ({B}, {S}), got {tuple(state.shape)}")
            state = state.to(device=device, dtype=torch.long)
        full = torch.cat([state, x], dim=1)  # (B, S + T)
        new_state = full[:, full.shape[1] - S :].clone()
        N = B * T
        if N == 0:
            return torch.empty(B, T, V, dtype=torch.float32, device=device), new_state

        coef = torch.ones(N, dtype=torch.float64, device=device)  # prod of gamma_j over the levels above
        adds: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (rows, cols, values) per level
        if S > 0:
            win = full.unfold(1, S, 1)[:, 1:, :].reshape(N, S)  # the S ids ending at each position, oldest first
            tok_ok = (win >= 0) & (win < V)
            win = win.clamp(0, V - 1)
            for k in range(self.order, 1, -1):  # highest order first, so coef is ready for each level
                rank, ok = self._context_ranks(win[:, S - (k - 1) :], tok_ok[:, S - (k - 1) :])
                gamma = getattr(self, f"gamma_{k}")
                if gamma.numel() == 0 or not bool(ok.any()):
                    continue
                rows = ok.nonzero().squeeze(1)
                rr = rank[rows]
                offsets = getattr(self, f"offsets_{k}")
                start = offsets[rr]
                cnt = offsets[rr + 1] - start
                total = int(cnt.sum())
                if total:
                    shift = start - (torch.cumsum(cnt, 0) - cnt)
                    rep_rows = torch.repeat_interleave(rows, cnt, output_size=total)
                    ent = torch.repeat_interleave(shift, cnt, output_size=total)
                    ent += torch.arange(total, device=device)
                    cols = getattr(self, f"ent_w_{k}")[ent].long()
                    vals = getattr(self, f"ent_alpha_{k}")[ent] * coef[rep_rows]
                    adds.append((rep_rows, cols, vals))
                coef[rows] = coef[rows] * gamma[rr]
        p = coef[:, None] * self.p1[None, :]
        flat = p.view(-1)
        for rows, cols, vals in reversed(adds):  # lowest order first; no duplicate (row, col) within a level
            flat.index_add_(0, rows * V + cols, vals)
        return p.log().to(torch.float32).view(B, T, V), new_state

    def _context_ranks(self, ctx: torch.Tensor, ok: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rank of each row's context (N, L) among training L-grams, and whether it was seen at all."""
        ok = ok.all(dim=1)
        rank = ctx[:, 0].clone()  # 1-grams are ranked by their id
        V = self.vocab_size
        for j in range(1, ctx.shape[1]):
            keys = getattr(self, f"keys_{j + 1}")
            if keys.numel() == 0:
                return torch.zeros_like(rank), torch.zeros_like(ok)
            query = rank * V + ctx[:, j]
            idx = torch.searchsorted(keys, query).clamp_(max=keys.numel() - 1)
            ok = ok & (keys[idx] == query)
            rank = idx
        return torch.where(ok, rank, torch.zeros_like(rank)), ok

    def keep_rows(self, state: torch.Tensor | None, keep: torch.Tensor) -> torch.Tensor | None:
        """The state of the rows where ``keep`` (a (B,) bool mask) is True; None stays None."""
        if state is None:
            return None
        return state[keep.to(device=state.device, dtype=torch.bool)]


class NgramFamily(TokenLMFamily):
    """model.kind ngram: KneserNeyLM of order model.order, fitted once on the training split (no
    epochs, no optimizer); train.seq_len and train.batch_size only set the windows it is scored on."""

    name = "ngram"
    trains_by_gradient = False

    def build(self, model_params: dict[str, Any], rep) -> KneserNeyLM:
        return KneserNeyLM(len(rep.vocab), model_params["order"])

    def from_config(self, config: dict[str, Any]) -> KneserNeyLM:
        return KneserNeyLM(**config)

    def fit(self, model: KneserNeyLM, train: Any, params: dict[str, Any]) -> Totals:
        from midigen.evaluation.lm_eval import evaluate_loss

        tp = params["train"]
        model.fit(train)
        device = model.p1.device
        # the training numbers of the curve: the same windows as validation, on the training split
        loss = evaluate_loss(model, train, tp["seq_len"], tp["batch_size"] * 2, device)
        n = len(train) - 1
        return Totals({"loss": loss * n}, n, n, 0)


FAMILY = NgramFamily()
