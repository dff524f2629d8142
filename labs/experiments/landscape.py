"""Lab `landscape`: the methods beyond the interview notes next to LoRA and full fine-tuning, on one task.

    full     every weight trains, AdamW                              2 fp32 moments per weight
    lora     B·A beside each linear, B = 0                           the reference adapter
    pissa    same shapes, B·A = W's top-r SVD part, base = residual  starts at the base, moves the big directions
    qlora    LoRA on an NF4 base, B = 0                              starts at deq(NF4(W)): the quantization gap
    loftq    LoRA on an NF4 base, B·A = rank-r fix of the gap        alternating quantize / SVD (loftq_iter)
    galore   every weight trains; Adam moments in a rank-r gradient subspace (SVD every T steps)
    ia3      one vector per k/v output and per down_proj input       (IA)³
    vera     frozen shared random A, B; per layer λ_b (out,), λ_d (r,)

Each method trains with `labs.train` on a fresh copy of the bundled base: same task, steps, batches and seed;
learning rates differ per method as PEFT practice does (vectors need larger steps than matrices). Measured per
method: trainable parameters, memory by category from the real tensors (frozen weights, 4-bit codes,
quantization constants, trainable, gradients, optimizer state at the step), accuracy before and after, median
seconds per step, and how far the initialized model is from the base (max |Δlogit|, mean KL(base ‖ model) on a
probe batch: 0 for every method that starts at the base; PiSSA ≲ 1e-4 from float rounding). The quantization gap:
per targeted matrix ‖W − (deq(Q) + s·B·A)‖_F at init for QLoRA (B·A = 0) and LoftQ, and the share of QLoRA's
output gap that LoftQ's init closes = 1 − KL_loftq / KL_qlora.
"""
from __future__ import annotations

import copy
import time

import torch

from labs.experiments import Context, Lab
from labs.methods.registry import SPECS
from labs.params import Param
from labs.tasks import TASKS, encode, get_task
from labs.toolkit import SeriesEmitter, memory_breakdown, median_step_seconds
from labs.train import Cancelled, TrainConfig, train

METHODS = ("full", "lora", "pissa", "qlora", "loftq", "galore", "ia3", "vera")
PRESETS = {"all": METHODS, "lora-inits": ("lora", "pissa", "qlora", "loftq"),
           "smallest": ("lora", "ia3", "vera"), "optimizer-side": ("full", "lora", "galore")}
# peak learning rate (AdamW, cosine) per method: the registry's defaults (PiSSA's 3e-3 was measured here: its A, B
# start large, so one Adam step moves s·(ΔB·A + B·ΔA) much further than LoRA's; at 1e-2 it reached 0.38 on the
# quick run, at 3e-3 0.75, at 1e-3 0.58), except IA³'s and VeRA's few vectors, which need more in 40 steps
LR = {m: SPECS[m].lr for m in METHODS} | {"ia3": 3e-1, "vera": 2e-1}
PROBE = 16                      # eval prompts whose logits check "PiSSA starts at the base"
INTRUDER_K, INTRUDER_EPS = 10, 0.5   # top-k fine-tuned singular vectors; "new" when max |cos| < eps (the paper's k, ε)
DENSE = ("full", "lora", "pissa", "galore")   # methods whose trained weight is a plain fp32 matrix to compare

PARAMS = [
    Param("task", "choice", "topic", choices=tuple(TASKS), help="fine-tuning task"),
    Param("methods", "choice", "all", choices=tuple(PRESETS), help="which methods to train, in turn"),
    Param("r", "int", 8, lo=1, hi=64, help="rank of LoRA, PiSSA, QLoRA, LoftQ and GaLore's projection"),
    Param("lora_alpha", "float", 16.0, lo=0.01, hi=1024.0, help="scaling = lora_alpha / r (PiSSA/LoftQ divide by it)"),
    Param("loftq_iter", "int", 1, lo=1, hi=10, help="LoftQ's alternating quantize/SVD rounds"),
    Param("galore_gap", "int", 20, lo=1, hi=1000, help="GaLore: steps between projector SVDs (T)"),
    Param("galore_scale", "float", 0.25, lo=0.01, hi=4.0, help="GaLore: scale α of the projected update"),
    Param("vera_r", "int", 256, lo=1, hi=1024, help="VeRA: rank of the shared random projections"),
    Param("lr_scale", "float", 1.0, lo=0.01, hi=100.0, log=True, help="multiplies every method's learning rate"),
    Param("steps", "int", 60, lo=2, hi=400, gpu_hi=5000, help="optimizer steps per method"),
    Param("batch_size", "int", 16, lo=1, hi=64, gpu_hi=512, help="examples per step"),
    Param("eval_limit", "int", 200, lo=16, hi=200, help="eval examples (the task has 200 / 40)"),
    Param("seed", "int", 0, lo=0, hi=2**31 - 1, help="random seed (same batches for every method)"),
]


def available(methods) -> list[str]:
    """The methods of the preset whose code is in the tree (IA³ / VeRA come from labs.methods' registry)."""
    from labs.methods import METHODS as REGISTERED

    return [m for m in methods if m not in ("ia3", "vera") or m in REGISTERED]


def build(method: str, base, p: dict):
    """(model, param_groups or None, optimizer name) for one method on a fresh copy of `base`."""
    from labs.methods import apply_method, galore, lora, qlora

    model = copy.deepcopy(base)
    torch.manual_seed(p["seed"])
    r, alpha = p["r"], p["lora_alpha"]
    if method == "full":
        return model.requires_grad_(True), None, "adamw"
    if method == "galore":
        return model, galore.param_groups(model, rank=r, update_proj_gap=p["galore_gap"],
                                          scale=p["galore_scale"]), "galore"
    if method in ("lora", "pissa"):
        lora.apply(model, r=r, lora_alpha=alpha, init="pissa" if method == "pissa" else "standard")
    elif method in ("qlora", "loftq"):
        qlora.apply(model, r=r, lora_alpha=alpha, init="loftq" if method == "loftq" else "standard",
                    loftq_iter=p["loftq_iter"])
    elif method == "ia3":
        apply_method(model, "ia3")
    elif method == "vera":
        apply_method(model, "vera", r=p["vera_r"], target_modules="all-linear", projection_prng_key=p["seed"])
    else:
        raise ValueError(f"method={method!r}: allowed one of {METHODS}")
    return model, None, "adamw"


@torch.no_grad()
def quant_gap(base, models: dict) -> dict:
    """Per targeted matrix, ‖W − (deq(Q) + s·B·A)‖_F at init for QLoRA and LoftQ (relative to ‖W‖_F)."""
    from labs.methods.lora import lora_layers
    from labs.methods.lora_init import reconstruction_error

    q, lq = lora_layers(models["qlora"]), lora_layers(models["loftq"])
    rows = []
    for name, m in lq.items():
        w = base.get_submodule(name).weight
        eq, el = reconstruction_error(w, q[name]), reconstruction_error(w, m)
        rows.append({"module": name, "qlora": eq["relative"], "loftq": el["relative"],
                     "reduction": 1 - el["fro"] / eq["fro"]})
    lower = sum(r["loftq"] < r["qlora"] for r in rows)
    return {"matrices": rows, "lower_on": lower, "of": len(rows),
            "mean_reduction": sum(r["reduction"] for r in rows) / max(len(rows), 1)}


@torch.no_grad()
def start_stats(model, base, probe: dict) -> dict:
    """A freshly initialized model against the base on the probe batch (padding off): the max |logit difference|
    and the mean KL(base ‖ model) of the next-token distributions, in nats per position."""
    def logits(m):
        m.eval()
        return m(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"]).logits.float()

    a, b = logits(base), logits(model)                                     # (B, T, V)
    mask = probe["attention_mask"].bool()                                  # (B, T)
    kl = torch.nn.functional.kl_div(b.log_softmax(-1), a.log_softmax(-1), log_target=True,
                                    reduction="none").sum(-1)              # (B, T)
    return {"max_abs_logit_diff": ((a - b).abs() * mask[..., None]).max().item(),
            "kl_to_base": kl[mask].mean().item()}


@torch.no_grad()
def effective_weights(model) -> dict[str, torch.Tensor]:
    """{module name: the (out, in) weight the model computes with} for dense linears and LoRA layers."""
    from labs.methods.lora import LoraLinear

    out = {}
    for name, m in model.named_modules():
        if isinstance(m, LoraLinear) and not m.is_quantized:
            out[name] = (m.base_weight() + m.delta_weight()).float()
        elif isinstance(m, torch.nn.Linear) and not any(name.startswith(k + ".") for k in out):
            out[name] = m.weight.float()
    return out


@torch.no_grad()
def intruders(base_svd: dict, model, k: int = INTRUDER_K, eps: float = INTRUDER_EPS) -> dict:
    """Intruder dimensions (Shuttleworth et al. 2024, arXiv:2410.21228): among the top-k left singular vectors of
    each fine-tuned matrix, those whose cosine with EVERY pre-trained left singular vector is below eps."""
    weights = effective_weights(model)
    per = {}
    for name, U0 in base_svd.items():
        U = torch.linalg.svd(weights[name], full_matrices=False)[0][:, :k]      # (out, k)
        per[name] = int(((U0.T @ U).abs().max(0).values < eps).sum())           # max over pre-trained vectors
    return {"k": k, "eps": eps, "total": sum(per.values()), "matrices": len(per),
            "with_any": sum(v > 0 for v in per.values()), "per_matrix": per}


def run(p: dict, ctx: Context) -> dict:
    from labs.base import load_base
    from labs.device import pick_device

    device = pick_device(ctx.device)
    t0 = time.perf_counter()
    base, tok = load_base()
    base.to(device)
    task = get_task(p["task"])
    methods = available(PRESETS[p["methods"]])
    probe = encode(tok, task.eval[:PROBE], device)
    head = base.get_output_embeddings()
    base_svd = {n: torch.linalg.svd(m.weight.float(), full_matrices=False)[0]          # (out, min) per matrix
                for n, m in base.named_modules() if isinstance(m, torch.nn.Linear) and m is not head}
    results, inits = {}, {}
    emitter = SeriesEmitter(ctx.emit, len(methods), share=1.0)
    for i, method in enumerate(methods):
        if ctx.should_stop():
            raise Cancelled(f"cancelled before {method}")
        t_build = time.perf_counter()
        model, groups, opt = build(method, base, p)
        init_seconds = time.perf_counter() - t_build
        model.to(device)
        start = start_stats(model, base, probe)
        if method in ("qlora", "loftq"):
            inits[method] = copy.deepcopy(model)                 # the init, before training moves A and B
        cfg = TrainConfig(steps=p["steps"], batch_size=p["batch_size"], eval_every=p["steps"],
                          lr=LR[method] * p["lr_scale"], warmup=max(1, p["steps"] // 10), eval_limit=p["eval_limit"], seed=p["seed"],
                          device=ctx.device, optimizer=opt)
        res = train(model, tok, task, cfg, param_groups=groups, on_event=emitter.part(i, method), should_stop=ctx.should_stop)
        results[method] = {
            "label": SPECS[method].label, "lr": cfg.lr, "init_seconds": init_seconds,
            "trainable_params": res["trainable_params"], "total_params": res["total_params"],
            "start": start, "base": res["base"], "final": res["final"],
            "seconds_per_step": median_step_seconds(res["history"], {e["step"] for e in res["evals"]}),
            "memory": memory_breakdown(model, res["memory"] or {}),
            "loss_curve": [h["loss"] for h in res["history"]]}
        if method in DENSE:
            results[method]["intruders"] = intruders(base_svd, model)
        del model
    out = {"device": str(device), "task": p["task"], "chance": task.chance, "methods": results,
           "skipped": [m for m in PRESETS[p["methods"]] if m not in methods]}
    if "qlora" in inits and "loftq" in inits:
        gap = quant_gap(base, inits)
        kq, kl = results["qlora"]["start"]["kl_to_base"], results["loftq"]["start"]["kl_to_base"]
        gap.update({"kl_qlora_init": kq, "kl_loftq_init": kl, "kl_gap_closed": 1 - kl / kq if kq > 0 else None,
                    "eval_loss_qlora_init": results["qlora"]["base"]["eval_loss"],
                    "eval_loss_loftq_init": results["loftq"]["base"]["eval_loss"]})
        out["quant_gap"] = gap
    if "full" in results and "galore" in results:
        full, gal = results["full"]["memory"]["optimizer"], results["galore"]["memory"]["optimizer"]
        out["galore_optimizer_ratio"] = gal / full if full else None
    out["seconds"] = time.perf_counter() - t0
    return out


LAB = Lab("landscape", PARAMS, run, quick={"steps": 40, "eval_limit": 40, "batch_size": 16},
          tiny={"steps": 2, "batch_size": 2, "eval_limit": 16, "r": 4, "lora_alpha": 8.0, "vera_r": 32,
               "galore_gap": 1})


# ---------------------------------------------------------------------------------------------------
# The page's instant picture: one real weight matrix, what each method keeps, trains and stores for it
# ---------------------------------------------------------------------------------------------------
@torch.no_grad()
def picture(w: torch.Tensor, r: int = 8, lora_alpha: float = 16.0, loftq_iter: int = 3, vera_r: int = 256,
            ffn_input: bool = False) -> dict:
    """For W (out, in): its singular values, PiSSA's split, QLoRA's vs LoftQ's init error per LoftQ round, and
    per method the trainable entries and optimizer-state entries this one matrix costs (AdamW: 2 per trained
    entry; GaLore: the projected moments plus the projector). IA³ scales the output (k/v) or, for a
    feed-forward input (`ffn_input`), the input. VeRA's shared A, B are frozen and counted once per model."""
    from labs.methods.linear4bit import Linear4bit
    from labs.methods.lora_init import loftq, svd_split

    w = w.float()
    out_f, in_f = w.shape
    if not 1 <= r <= min(out_f, in_f):
        raise ValueError(f"r = {r} is out of range: allowed 1..{min(out_f, in_f)} for a {out_f}×{in_f} matrix")
    s = lora_alpha / r
    S = torch.linalg.svdvals(w)                                           # (min(out, in),)
    energy = (S ** 2).cumsum(0) / (S ** 2).sum()
    B, A = svd_split(w, r, s)
    residual = w - s * (B @ A)
    norm = torch.linalg.matrix_norm(w).item()
    dense = torch.nn.Linear(in_f, out_f, bias=False)
    dense.weight.copy_(w)
    plain_err = torch.linalg.matrix_norm(w - Linear4bit(dense).dequantize().float()).item() / norm   # B·A = 0
    _, _, _, errs = loftq(w, dense, r, s, loftq_iter)
    left = out_f <= in_f
    galore_state = 2 * r * (in_f if left else out_f) + r * (out_f if left else in_f)
    trained = {"full": out_f * in_f, "lora": r * (out_f + in_f), "pissa": r * (out_f + in_f),
               "ia3": in_f if ffn_input else out_f, "vera": out_f + vera_r, "galore": out_f * in_f}
    state = {k: 2 * v for k, v in trained.items()}
    state["galore"] = galore_state
    return {"shape": [out_f, in_f], "r": r, "singular_values": S.tolist(), "energy_top_r": energy[r - 1].item(),
            "pissa": {"principal_fro": torch.linalg.matrix_norm(s * (B @ A)).item() / norm,
                      "residual_fro": torch.linalg.matrix_norm(residual).item() / norm,
                      "residual_top_singular": torch.linalg.svdvals(residual)[0].item(),
                      "sigma_r_plus_1": S[r].item() if r < len(S) else 0.0},
            "quant_error": {"qlora": plain_err, "loftq": [e / norm for e in errs]},
            "trainable": trained, "optimizer_entries": state}
