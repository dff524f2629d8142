"""Multi-LoRA serving simulator: one base model, K adapters, a stream of requests, three strategies.

    requests ─► batches of `batch_size` ─► strategy ─► per-request logits, finish times
                (request i names adapter a_i)

    merge_swap   per adapter group in the batch: W0 ← W0 + s·B A, run the group, W0 ← W0 − s·B A
    per_group    per adapter group in the batch: run the group with that one adapter unmerged
                 (`peftlab_kernels.lora.lora_linear`); the base GEMM is repeated once per group
    batched      the whole batch at once: base GEMM once, each row adds its own adapter's low-rank term
                 (`peftlab_kernels.multi_lora`: SGMV over each request's prompt at prefill, BGMV per token at decode);
                 adapters live in `slots` device slots filled from the host store by an LRU cache
                 (vLLM's max_loras / max_cpu_loras split), a batch with more distinct adapters than
                 slots is split into sub-batches

Every request prefills `prompt_len` tokens and then decodes `new_tokens` steps with a KV cache. The
decode inputs are fixed (teacher-forced from the prompt source), so every strategy sees the same tokens
and their logits can be compared position by position with a per-request reference (each request run
alone with its adapter unmerged). All requests arrive at t = 0; a request's latency is the time its
group (or batch) finishes. No UI here: `labs.experiments.serving` turns this into a lab.
"""
from __future__ import annotations

import math
import statistics
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn

from peftlab_kernels.lora import lora_linear
from peftlab_kernels.multi_lora import bgmv, sgmv
from labs.methods import inject

STRATEGIES = ("merge_swap", "per_group", "batched")


@dataclass
class Route:
    """What the wrapped linears do on the next forward (shared by all of them)."""
    mode: str = "base"                  # "base" | "single" | "multi"
    adapter: int = -1                   # mode "single": the host adapter id
    rows: torch.Tensor | None = None    # mode "multi": (b,) slot id per request
    segments: bool = True               # mode "multi": SGMV when a request has several tokens


class MultiLoraLinear(nn.Module):
    """A frozen linear plus K stacked adapters in a host store and `slots` device slots.

    host_A (K, r_max, in), host_B (K, out, r_max): every adapter, ranks zero-padded to r_max.
    slot_A (S, r_max, in), slot_B (S, out, r_max): what a batched forward may use (filled by AdapterCache).
    """

    is_adapter_layer = True

    def __init__(self, base: nn.Linear, A: torch.Tensor, B: torch.Tensor, scaling: torch.Tensor, ranks: list,
                 route: Route, slots: int):
        super().__init__()
        self.base_layer, self.route, self.ranks = base, route, ranks
        self.register_buffer("host_A", A)
        self.register_buffer("host_B", B)
        self.register_buffer("host_scaling", scaling)
        self.register_buffer("slot_A", A.new_zeros(slots, *A.shape[1:]))
        self.register_buffer("slot_B", B.new_zeros(slots, *B.shape[1:]))
        self.register_buffer("slot_scaling", scaling.new_zeros(slots))

    def delta_weight(self, k: int) -> torch.Tensor:
        return self.host_scaling[k] * (self.host_B[k] @ self.host_A[k])      # (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        route = self.route
        if route.mode == "single":
            k, r = route.adapter, self.ranks[route.adapter]
            return lora_linear(x, self.base_layer.weight, self.base_layer.bias, self.host_A[k, :r],
                               self.host_B[k, :, :r], float(self.host_scaling[k]))
        y = self.base_layer(x)                                                # (b, s, out): once for all
        if route.mode != "multi":
            return y
        b, s, d_in = x.shape
        x2 = x.reshape(b * s, d_in)                                           # (b·s, in)
        if s > 1 and route.segments:                                          # prefill: one segment per request
            starts = torch.arange(0, (b + 1) * s, s, device=x.device)        # (b+1,)
            delta = sgmv(x2, self.slot_A, self.slot_B, starts, route.rows, self.slot_scaling)
        else:                                                                 # decode: one row per request
            delta = bgmv(x2, self.slot_A, self.slot_B, route.rows.repeat_interleave(s), self.slot_scaling)
        return y + delta.view(b, s, -1)


class AdapterCache:
    """LRU map host adapter id → device slot; a miss copies the adapter into the slot of the LRU entry."""

    def __init__(self, layers: list[MultiLoraLinear], slots: int):
        self.layers, self.slots = layers, slots
        self.where: OrderedDict[int, int] = OrderedDict()
        self.hits = self.loads = 0

    def fetch(self, adapters: list[int]) -> dict[int, int]:
        if len(set(adapters)) > self.slots:
            raise ValueError(f"fetch: {len(set(adapters))} adapters > slots={self.slots}; split the batch")
        for k in dict.fromkeys(adapters):
            if k in self.where:
                self.where.move_to_end(k)
                self.hits += 1
                continue
            used = set(self.where.values())
            slot = next((j for j in range(self.slots) if j not in used), None)
            if slot is None:                                                  # evict the least recently used
                _, slot = self.where.popitem(last=False)
            with torch.no_grad():
                for m in self.layers:
                    m.slot_A[slot].copy_(m.host_A[k])
                    m.slot_B[slot].copy_(m.host_B[k])
                    m.slot_scaling[slot] = m.host_scaling[k]
            self.where[k] = slot
            self.loads += 1
        return {k: self.where[k] for k in adapters}


@dataclass
class Server:
    model: nn.Module
    layers: dict
    route: Route
    cache: AdapterCache
    ranks: list
    adapter_bytes: int = 0
    base_bytes: int = 0
    slot_bytes: int = 0


def adapter_ranks(K: int, r: int, mixed: bool) -> list[int]:
    """All r, or a cycle r, r/2, r/4 (≥ 1): mixed ranks, stacked by zero padding to r."""
    return [max(1, r >> (k % 3)) if mixed else r for k in range(K)]


def build_server(model: nn.Module, K: int, r: int, targets, slots: int, mixed_ranks: bool = False,
                 lora_alpha: float = 16.0, b_scale: float = 0.05, seed: int = 0) -> Server:
    """Wrap `targets` linears of `model` in MultiLoraLinear with K random adapters (B ≠ 0, so each changes
    the output): A ~ N(0, 1/in), B ~ N(0, b_scale²), scaling = lora_alpha / r_k."""
    if K < 1 or r < 1 or slots < 1:
        raise ValueError(f"build_server: adapters={K}, r={r}, slots={slots}: allowed integers >= 1")
    g = torch.Generator().manual_seed(seed)
    ranks = adapter_ranks(K, r, mixed_ranks)
    route = Route()
    slots = min(slots, K)
    dtype = next(model.parameters()).dtype
    base_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    def make(_name, lin: nn.Linear) -> MultiLoraLinear:
        d_out, d_in = lin.weight.shape
        A = torch.randn(K, r, d_in, generator=g) / math.sqrt(d_in)           # (K, r, in)
        B = torch.randn(K, d_out, r, generator=g) * b_scale                  # (K, out, r)
        for k, rk in enumerate(ranks):                                        # zero padding above r_k
            A[k, rk:] = 0
            B[k, :, rk:] = 0
        s = torch.tensor([lora_alpha / rk for rk in ranks])
        return MultiLoraLinear(lin, A.to(dtype), B.to(dtype), s.to(dtype), ranks, route, slots)

    names = inject.inject(model, targets, make)
    layers = {n: model.get_submodule(n) for n in names}
    stored = sum(m.host_A.numel() * m.host_A.element_size() + m.host_B.numel() * m.host_B.element_size()
                 for m in layers.values())
    slot_bytes = sum(m.slot_A.numel() * m.slot_A.element_size() + m.slot_B.numel() * m.slot_B.element_size()
                     for m in layers.values())
    unpadded = sum(rk * (m.host_A.shape[2] + m.host_B.shape[1]) * m.host_A.element_size()
                   for m in layers.values() for rk in ranks)
    srv = Server(model, layers, route, AdapterCache(list(layers.values()), slots), ranks,
                 adapter_bytes=unpadded, base_bytes=base_bytes, slot_bytes=slot_bytes)
    srv.padded_adapter_bytes = stored
    return srv


def make_stream(n: int, K: int, traffic: str, seed: int = 0, zipf_s: float = 1.2) -> list[int]:
    """Adapter id per request: uniform over K, or skewed (Zipf: p_k ∝ 1/(k+1)^s, a few adapters are hot)."""
    g = torch.Generator().manual_seed(seed)
    if traffic == "uniform":
        return torch.randint(0, K, (n,), generator=g).tolist()
    if traffic == "skewed":
        p = torch.tensor([1.0 / (k + 1) ** zipf_s for k in range(K)])
        return torch.multinomial(p / p.sum(), n, replacement=True, generator=g).tolist()
    raise ValueError(f"traffic={traffic!r}: allowed uniform, skewed")


def make_tokens(tok, n: int, length: int, seed: int = 0) -> torch.Tensor:
    """(n, length) token ids: windows of the built-in task texts (real text, fixed per seed)."""
    from labs.tasks import get_task

    ex = get_task("sentiment", seed=seed).train
    ids = tok("\n".join(e.prompt + e.answer for e in ex[: 4 * n + 64]))["input_ids"]
    need = n * length
    while len(ids) < need:
        ids = ids + ids
    return torch.tensor(ids[:need]).view(n, length)


@torch.no_grad()
def generate(srv: Server, tokens: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """Prefill tokens[:, :prompt_len], then one cached step per remaining column: logits (b, steps+1, V)."""
    out = srv.model(input_ids=tokens[:, :prompt_len], use_cache=True)
    past, logits = out.past_key_values, [out.logits[:, -1]]
    with warnings.catch_warnings():   # transformers >= 5.2x renames past_key_values → cache; 5.17 knows only the old name
        warnings.simplefilter("ignore", FutureWarning)
        for j in range(prompt_len, tokens.shape[1]):
            out = srv.model(input_ids=tokens[:, j: j + 1], past_key_values=past, use_cache=True)
            past = out.past_key_values
            logits.append(out.logits[:, -1])
    return torch.stack(logits, 1)


def _groups(adapters: list[int]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, a in enumerate(adapters):
        groups.setdefault(a, []).append(i)
    return groups


def _run_group(srv: Server, strategy: str, k: int, tokens, prompt_len):
    if strategy == "per_group":
        srv.route.mode, srv.route.adapter = "single", k
        return generate(srv, tokens, prompt_len)
    with torch.no_grad():                                                     # merge_swap
        for m in srv.layers.values():
            m.base_layer.weight.add_(m.delta_weight(k))
        srv.route.mode = "base"
        try:
            return generate(srv, tokens, prompt_len)
        finally:
            for m in srv.layers.values():
                m.base_layer.weight.sub_(m.delta_weight(k))


def _split_by_slots(adapters: list[int], slots: int) -> list[list[int]]:
    """Consecutive chunks of a batch with at most `slots` distinct adapters each (vLLM's max_loras)."""
    chunks, cur, seen = [], [], set()
    for i, a in enumerate(adapters):
        if a not in seen and len(seen) == slots:
            chunks.append(cur)
            cur, seen = [], set()
        cur.append(i)
        seen.add(a)
    return chunks + [cur] if cur else chunks


def serve(srv: Server, strategy: str, tokens: torch.Tensor, adapters: list[int], prompt_len: int,
          batch_size: int, should_stop=None) -> dict:
    """Run the whole stream with one strategy: logits (n, steps+1, V), per-request latency, totals."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r}: allowed {', '.join(STRATEGIES)}")
    n = tokens.shape[0]
    logits, finish = [None] * n, [0.0] * n
    loads0, hits0 = srv.cache.loads, srv.cache.hits
    t0 = time.perf_counter()
    for b0 in range(0, n, batch_size):
        if should_stop is not None and should_stop():
            from labs.train import Cancelled
            raise Cancelled()
        batch = list(range(b0, min(n, b0 + batch_size)))
        if strategy == "batched":
            parts = [[batch[i] for i in c] for c in _split_by_slots([adapters[i] for i in batch], srv.cache.slots)]
        else:
            parts = [[batch[i] for i in g] for g in _groups([adapters[i] for i in batch]).values()]
        for part in parts:
            rows = torch.tensor(part, device=tokens.device)
            if strategy == "batched":
                slot = srv.cache.fetch([adapters[i] for i in part])
                srv.route.mode = "multi"
                srv.route.rows = torch.tensor([slot[adapters[i]] for i in part], device=tokens.device)
                out = generate(srv, tokens[rows], prompt_len)
            else:
                out = _run_group(srv, strategy, adapters[part[0]], tokens[rows], prompt_len)
            done = time.perf_counter() - t0
            for j, i in enumerate(part):
                logits[i], finish[i] = out[j], done
    srv.route.mode = "base"
    wall = time.perf_counter() - t0
    steps = tokens.shape[1] - prompt_len
    lat = sorted(finish)
    return {"logits": torch.stack(logits), "seconds": wall, "latency_s": finish,
            "p50_s": statistics.median(lat), "p95_s": lat[min(n - 1, math.ceil(0.95 * n) - 1)],
            "tokens_per_s": n * tokens.shape[1] / wall, "decode_tokens_per_s": n * steps / wall,
            "adapter_loads": srv.cache.loads - loads0, "cache_hits": srv.cache.hits - hits0}


def reference(srv: Server, tokens: torch.Tensor, adapters: list[int], prompt_len: int) -> torch.Tensor:
    """Each request alone with its adapter unmerged: the oracle every strategy is compared with."""
    return serve(srv, "per_group", tokens, adapters, prompt_len, batch_size=1)["logits"]
