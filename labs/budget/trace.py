"""Check the formula against PyTorch's own accounting: one real training step, no real memory.

The same architecture (transformers' Llama/Mistral/Qwen2 built from the config) and the same method
run forward + backward + optimizer step under ``FakeTensorMode`` (tensors carry shapes and dtypes,
never storage) inside ``torch.distributed._tools.mem_tracker.MemTracker``, which categorises every
storage as parameter, buffer, gradient, activation, temporary or optimizer state and keeps the peak.

Depth scaling (stated in the result): a deep model is traced at 1 and 2 layers and extrapolated
linearly, v(L) = v(1) + (L - 1) * (v(2) - v(1)). Every term here is linear in L (model states per
layer; saved activations per layer, or one layer input per layer under checkpointing), so this is
exact up to what one more layer changes; small configs are traced at full depth with no scaling.

``measure_cuda`` runs the real step on a CUDA device and reads ``torch.cuda.max_memory_allocated``.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from labs.budget.methods import LORA_LIKE, parse_targets
from labs.budget.params import hf_config, linear_shapes
from labs.budget.presets import ArchConfig, BudgetError

TRACEABLE = ("full", "lora", "qlora", "dora", "adalora", "prompt", "houlsby", "ia3", "vera")
FULL_DEPTH_MAX_LAYERS = 4


class LoRALinear(nn.Module):
    """base(x) + scaling * B(A(x)); DoRA rescales by m / ||W + sBA||_c; AdaLoRA adds lora_E (P Λ Q)."""

    def __init__(self, base: nn.Module, r: int, kind: str, out_f: int, in_f: int, dtype):
        super().__init__()
        self.base, self.kind, self.scaling = base, kind, 2.0
        self.lora_A = nn.Parameter(torch.randn(r, in_f, dtype=dtype) * 0.01)
        self.lora_B = nn.Parameter(torch.zeros(out_f, r, dtype=dtype))
        if kind == "adalora":
            self.lora_E = nn.Parameter(torch.zeros(r, 1, dtype=dtype))
        if kind == "dora":
            self.magnitude = nn.Parameter(torch.ones(out_f, dtype=dtype))

    def forward(self, x):                                   # x (B, T, in)
        base = self.base(x)                                 # (B, T, out)
        A = self.lora_A * self.lora_E if self.kind == "adalora" else self.lora_A
        lora = (x @ A.t()) @ self.lora_B.t()                # (B, T, r) -> (B, T, out)
        if self.kind != "dora":
            return base + self.scaling * lora
        with torch.no_grad():                               # DoRA 4.3: the norm is detached
            w = dequantized(self.base) + self.scaling * self.lora_B @ self.lora_A
            norm = w.norm(dim=1)                            # (out,)
        scale = self.magnitude / norm
        return (scale - 1) * base + scale * lora * self.scaling


class _NF4Matmul(torch.autograd.Function):
    """y = x @ dequant(W)^T; backward re-dequantizes, so only the 4-bit storage is kept (QLoRA)."""

    @staticmethod
    def forward(ctx, x, mod):
        ctx.mod = mod
        return x @ dequantized(mod).t()

    @staticmethod
    def backward(ctx, g):
        return g @ dequantized(ctx.mod), None


class NF4Linear(nn.Module):
    """Frozen 4-bit weight: packed codes (out*in/2 bytes) + absmax constants (double-quant layout)."""

    def __init__(self, out_f: int, in_f: int, dtype, blocksize: int = 64):
        super().__init__()
        n = out_f * in_f
        blocks = -(-n // blocksize)
        self.out_f, self.in_f, self.dtype = out_f, in_f, dtype
        self.register_buffer("packed", torch.zeros(n // 2, dtype=torch.uint8))
        self.register_buffer("absmax_q", torch.zeros(blocks, dtype=torch.uint8))
        self.register_buffer("absmax_2", torch.zeros(-(-blocks // 256), dtype=torch.float32))
        self.register_buffer("absmax_offset", torch.zeros((), dtype=torch.float32))

    def forward(self, x):
        return _NF4Matmul.apply(x, self)


def dequantized(mod: nn.Module) -> torch.Tensor:
    if isinstance(mod, NF4Linear):
        return torch.empty(mod.out_f, mod.in_f, dtype=mod.dtype, device=mod.packed.device)
    return mod.weight


class Houlsby(nn.Module):
    """sublayer output y -> y + up(act(down(y))) (a bottleneck adapter after attention / after the MLP)."""

    def __init__(self, inner: nn.Module, h: int, m: int, dtype):
        super().__init__()
        self.inner = inner
        self.down = nn.Linear(h, m, dtype=dtype)
        self.up = nn.Linear(m, h, dtype=dtype)

    def forward(self, x):
        y = self.inner(x)
        return y + self.up(torch.nn.functional.gelu(self.down(y)))


class IA3Scale(nn.Module):
    """(IA)³: base(x) * l (output-scaled target) or base(x * l) (feed-forward target), l trainable."""

    def __init__(self, base: nn.Linear, feedforward: bool, dtype):
        super().__init__()
        self.base, self.feedforward = base, feedforward
        out_f, in_f = base.weight.shape
        self.ia3_l = nn.Parameter(torch.ones(in_f if feedforward else out_f, dtype=dtype))

    def forward(self, x):
        return self.base(x * self.ia3_l) if self.feedforward else self.base(x) * self.ia3_l


class VeraBranch(nn.Module):
    """VeRA: base(x) + λ_b ⊙ B[:out] (λ_d ⊙ A[:, :in] x); A, B frozen buffers shared by every target."""

    def __init__(self, base: nn.Linear, shared: nn.Module, r: int, dtype):
        super().__init__()
        self.base = base
        self.__dict__["shared"] = shared                    # one A, B for the model (registered on it once)
        self.out_f, self.in_f = base.weight.shape
        self.vera_lambda_b = nn.Parameter(torch.zeros(self.out_f, dtype=dtype))
        self.vera_lambda_d = nn.Parameter(torch.full((r,), 0.1, dtype=dtype))

    def forward(self, x):
        h = torch.nn.functional.linear(x, self.shared.vera_A[:, : self.in_f]) * self.vera_lambda_d    # (B, T, r)
        return self.base(x) + self.vera_lambda_b * torch.nn.functional.linear(h, self.shared.vera_B[: self.out_f])


class RefOptimizer(torch.optim.Optimizer):
    """Allocates each optimizer's real state layout (AdamW m,v · 8-bit codes + absmax per 256 · SGD momentum ·
    Adafactor row/col second moments) and, in bf16-mixed, an fp32 master copy; then does one update."""

    def __init__(self, params, kind: str, state_dtype, master: bool, lr: float = 1e-4):
        super().__init__(params, {"lr": lr})
        self.kind, self.state_dtype, self.master = kind, state_dtype, master

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    self._init_state(p, st)
                g = p.grad.float() if self.master else p.grad
                target = st.get("master", p)
                if "exp_avg" in st and st["exp_avg"].dtype != torch.uint8:
                    st["exp_avg"].lerp_(g.to(st["exp_avg"].dtype), 0.1)
                if "momentum" in st:
                    st["momentum"].mul_(0.9).add_(g.to(st["momentum"].dtype))
                target.add_(g.to(target.dtype), alpha=-group["lr"])
                if self.master:
                    p.copy_(target)

    def _init_state(self, p, st):
        sd, n = self.state_dtype, p.numel()
        if self.master:
            st["master"] = p.detach().float()
        if self.kind == "adamw":
            st["exp_avg"], st["exp_avg_sq"] = torch.zeros_like(p, dtype=sd), torch.zeros_like(p, dtype=sd)
        elif self.kind in ("adamw-8bit", "paged-adamw-8bit"):
            blocks = -(-n // 256)
            for i in (1, 2):
                st[f"state{i}"] = torch.zeros_like(p, dtype=torch.uint8)
                st[f"absmax{i}"] = torch.zeros(blocks, dtype=torch.float32, device=p.device)
        elif self.kind == "sgd":
            st["momentum"] = torch.zeros_like(p, dtype=sd)
        elif p.dim() == 2 and min(p.shape) > 1:             # adafactor, factored
            st["row"] = torch.zeros(p.shape[0], dtype=sd, device=p.device)
            st["col"] = torch.zeros(p.shape[1], dtype=sd, device=p.device)
        else:
            st["v"] = torch.zeros_like(p, dtype=sd)


def build(c: ArchConfig, n_layers: int, method: str, rank: int, targets, precision: str, flash: bool,
          n_tokens: int = 20, adapter_size: int = 64, nf4_blocksize: int = 64, checkpointing: str = "full",
          feedforward=None):
    """The model with the method applied (call inside FakeTensorMode) and its trainable parameters."""
    from transformers import AutoModelForCausalLM

    dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    cfg = hf_config(c, num_hidden_layers=n_layers)
    cfg._attn_implementation = "sdpa" if flash else "eager"
    model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model.train()
    extra: list[nn.Parameter] = []
    if method != "full":
        model.requires_grad_(False)
    if method in LORA_LIKE:
        tg = parse_targets(targets)
        for layer in model.model.layers:
            for name in tg:
                parent = layer.self_attn if name in ("q_proj", "k_proj", "v_proj", "o_proj") else layer.mlp
                lin = getattr(parent, name)
                out_f, in_f = lin.weight.shape
                base = NF4Linear(out_f, in_f, dtype, nf4_blocksize) if method == "qlora" else lin
                setattr(parent, name, LoRALinear(base, rank, method, out_f, in_f, dtype))
            if method == "qlora":  # QLoRA quantizes every decoder linear, targeted or not
                for parent in (layer.self_attn, layer.mlp):
                    for name, lin in list(parent.named_children()):
                        if isinstance(lin, nn.Linear):
                            setattr(parent, name, NF4Linear(*lin.weight.shape, dtype, nf4_blocksize))
    elif method in ("ia3", "vera"):
        from labs.budget.methods import vector_method_params

        info = vector_method_params(c, method, rank, targets, feedforward)
        if method == "vera":
            shared = nn.Module()
            shapes = linear_shapes(c)
            max_o, max_i = (max(shapes[n][k] for n in info["targets"]) for k in (0, 1))
            shared.register_buffer("vera_A", torch.randn(rank, max_i, dtype=dtype))
            shared.register_buffer("vera_B", torch.randn(max_o, rank, dtype=dtype))
            model.vera_shared = shared
        for layer in model.model.layers:
            for name in info["targets"]:
                parent = layer.self_attn if name in ("q_proj", "k_proj", "v_proj", "o_proj") else layer.mlp
                lin = getattr(parent, name)
                setattr(parent, name, IA3Scale(lin, name in info["feedforward"], dtype) if method == "ia3"
                        else VeraBranch(lin, model.vera_shared, rank, dtype))
    elif method == "houlsby":
        for layer in model.model.layers:
            layer.self_attn.o_proj = Houlsby(layer.self_attn.o_proj, c.hidden_size, adapter_size, dtype)
            layer.mlp.down_proj = Houlsby(layer.mlp.down_proj, c.hidden_size, adapter_size, dtype)
    elif method == "prompt":
        model.prompt = nn.Parameter(torch.randn(n_tokens, c.hidden_size, dtype=dtype) * 0.01)
    if checkpointing == "full":
        if hasattr(model, "activation_checkpointing_enable"):        # transformers >= 5.2x
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    trainable = [p for p in model.parameters() if p.requires_grad] + extra
    return model, trainable


def _peak_tracker():
    from torch.distributed._tools.mem_tracker import MemTracker, _MemRefType

    class PeakTracker(MemTracker):
        """MemTracker that also keeps the largest activation + temporary total seen (the activation peak),
        and hooks gradients only on parameters that train (upstream hooks every parameter, which
        fails on a frozen base)."""

        act_peak = 0

        def _track_module_params_and_buffers(self, module, install_grad_hooks=True):
            out = super()._track_module_params_and_buffers(module, install_grad_hooks=False)

            def hook(g):
                self._update_and_maybe_create_winfos(g, _MemRefType.GRAD)

            for p in module.parameters():
                if install_grad_hooks and p.requires_grad and self._param_to_grad_hook_handles.get(p) is None:
                    self._param_to_grad_hook_handles[p] = (
                        p.register_hook(hook), p.register_post_accumulate_grad_hook(lambda q: hook(q.grad)))
            return out

        def _update_peak_stats(self, peak_state):
            super()._update_peak_stats(peak_state)
            for snap in self._curr_mem_snap.values():
                self.act_peak = max(self.act_peak, snap.get("Activation", 0) + snap.get("Temp", 0))

    return PeakTracker()


def trace_once(c: ArchConfig, n_layers: int, method="lora", rank=16, targets="all-linear", precision="bf16-mixed",
               optimizer="adamw", checkpointing="full", flash=True, batch=1, seq=512, n_tokens=20,
               adapter_size=64, nf4_blocksize=64, feedforward=None) -> dict:
    """Bytes by category for one step of an ``n_layers``-deep copy of ``c``."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    if method not in TRACEABLE:
        raise BudgetError("method", f"--trace supports method in {', '.join(TRACEABLE)}; got {method!r} "
                                    "(its formula is still computed)")
    with FakeTensorMode(allow_non_fake_inputs=True):
        model, trainable = build(c, n_layers, method, rank, targets, precision, flash, n_tokens, adapter_size,
                                 nf4_blocksize, checkpointing, feedforward)
        sd = torch.float32 if precision in ("fp32", "bf16-mixed") else torch.bfloat16
        opt = RefOptimizer(trainable, optimizer, sd, master=precision == "bf16-mixed")
        ids = torch.randint(0, c.vocab_size, (batch, seq))
        mt = _peak_tracker()
        mt.track_external(model, opt)
        with mt:
            if method == "prompt":
                emb = model.get_input_embeddings()(ids)                         # (B, T, h)
                emb = torch.cat([model.prompt.expand(batch, -1, -1), emb], 1)   # (B, n+T, h)
                labels = torch.cat([torch.full((batch, n_tokens), -100), ids], 1)
                out = model(inputs_embeds=emb, labels=labels)
            else:
                out = model(input_ids=ids, labels=ids)
            out.loss.backward()
            opt.step()
            snap = next(iter(mt.get_tracker_snapshot("current").values()))
        peak = next(iter(mt.get_tracker_snapshot("peak").values()))
        quant = sum(b.numel() * b.element_size() for n, b in model.named_buffers() if "absmax" in n)
    weights = snap.get("Parameter", 0) + snap.get("Buffer", 0) - quant
    return {"weights": weights, "quant_constants": quant, "gradients": snap.get("Gradient", 0),
            "optimizer": snap.get("Optstate", 0), "activations_peak": mt.act_peak,
            "peak_total": peak.get("Total", 0)}


def trace(c: ArchConfig, **kw) -> dict:
    """Trace at full depth when small, else at 1 and 2 layers and extrapolate linearly to ``c.n_layers``."""
    t0 = time.perf_counter()
    L = c.n_layers
    one = two = None
    if L <= FULL_DEPTH_MAX_LAYERS:
        res, note = trace_once(c, L, **kw), f"traced all {L} layers"
        if L >= 2:     # small models: the per-layer figure still needs a 1- and a 2-layer trace
            one, two = (res, None) if L == 1 else (trace_once(c, 1, **kw), res if L == 2 else trace_once(c, 2, **kw))
    else:
        one, two = trace_once(c, 1, **kw), trace_once(c, 2, **kw)
        res = {k: one[k] + (L - 1) * (two[k] - one[k]) for k in one}
        note = f"traced 1 and 2 layers, scaled linearly to {L} layers: v(L) = v(1) + (L-1)(v(2)-v(1))"
    # what one more decoder layer adds to the activation peak (the closed forms' per-layer figure)
    res["activations_per_layer"] = two["activations_peak"] - one["activations_peak"] if two else None
    res["model_states"] = res["weights"] + res["quant_constants"] + res["gradients"] + res["optimizer"]
    if kw.get("method", "lora") == "full":
        # MemTracker labels a weight gradient "Temp" when backward creates it and "Gradient" only once it is
        # accumulated, so the activation+temp peak holds one weight gradient the formula counts as a gradient.
        from labs.budget.params import linear_shapes
        p = 4 if kw.get("precision", "bf16-mixed") == "fp32" else 2
        res["grad_in_flight"] = p * max(o * i for o, i in linear_shapes(c).values())
    res["note"] = note
    res["seconds"] = round(time.perf_counter() - t0, 2)
    return res


def measure_cuda(c: ArchConfig, **kw) -> dict:
    """A real step on CUDA: ``torch.cuda.max_memory_allocated`` (needs a GPU that fits the model)."""
    if not torch.cuda.is_available():
        raise BudgetError("measure", "--measure needs a CUDA device: none is available here (use --trace)")
    torch.cuda.reset_peak_memory_stats()
    with torch.device("cuda"):
        model, trainable = build(c, c.n_layers, kw.get("method", "lora"), kw.get("rank", 16),
                                 kw.get("targets", "all-linear"), kw.get("precision", "bf16-mixed"),
                                 kw.get("flash", True), checkpointing=kw.get("checkpointing", "full"))
    p = kw.get("precision", "bf16-mixed")
    opt = RefOptimizer(trainable, kw.get("optimizer", "adamw"),
                       torch.float32 if p in ("fp32", "bf16-mixed") else torch.bfloat16, master=p == "bf16-mixed")
    ids = torch.randint(0, c.vocab_size, (kw.get("batch", 1), kw.get("seq", 512)), device="cuda")
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
    torch.cuda.synchronize()
    return {"max_memory_allocated": torch.cuda.max_memory_allocated()}
