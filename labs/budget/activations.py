"""Activation memory of a Llama decoder layer: the tensors autograd saves for backward.

Per token (multiply by b*s*p bytes, p = compute-dtype bytes; h hidden, a heads, k KV heads, d head_dim,
I MLP width), walking HF's LlamaDecoderLayer:

    RMSNorm x2       x.float() (4 bytes, saved by pow)  +  normalized x (if the norm weight trains)
                     +  its output (if the next linear needs its input)
    q/k/v_proj       input saved only if some weight that reads it trains (full FT, or a LoRA target)
    RoPE             q, k after rotation (saved by the attention matmuls / SDPA)
    attention        flash/SDPA: q (a*d), k, v (k*d each), output (a*d), logsumexp (a, fp32)
                     eager: q, k, v repeated to a heads (GQA materialises them), scores softmax P
                     (a*s, fp32) and its bf16 copy (a*s*p) -- the s^2 term flash removes
    o_proj           attention output (a*d), if o_proj trains / is a LoRA target
    MLP              gate (I, saved by SiLU), SiLU(gate) and up (I each, saved by the product),
                     product (I, if down_proj needs it)
    LoRA branch      x (shared with the base input) + A x (r) per target
    (IA)³            output-scaled target: its base output (out), saved by y * l for l's gradient;
                     feed-forward target: its input (in), saved by x * l -- as if that weight trained
    VeRA             per target: A x (r, saved by * λ_d) and B (λ_d ⊙ A x) (out, saved by * λ_b); A, B are
                     frozen, so x itself is not saved

Full checkpointing keeps only each layer's input (h) and recomputes one layer at a time in backward,
so the peak is L*h + one layer's saved set + backward temporaries, or the loss backward if larger.
"""
from __future__ import annotations

from labs.budget.methods import LORA_LIKE
from labs.budget.params import linear_shapes
from labs.budget.presets import ArchConfig

FP32 = 4


def _trains(method: str, info: dict, name: str) -> bool:
    """Does the weight ``name`` (a linear or "norm") need its input saved?"""
    if method == "full":
        return True
    if method in LORA_LIKE:
        return name in info["targets"]
    if method == "ia3":                      # x * l saves x for l's gradient: the same tensor a trained weight saves
        return name in info["feedforward"]
    return False


def layer_saved(c: ArchConfig, method: str, info: dict, p: int, b: int, s: int, flash: bool) -> dict[str, float]:
    """Bytes one decoder layer saves for backward, by tensor."""
    h, a, kd, ad, I = c.hidden_size, c.n_heads, c.kv_dim, c.q_dim, c.intermediate_size
    bs = b * s
    tr = lambda n: _trains(method, info, n)  # noqa: E731
    t: dict[str, float] = {}
    norm_fp32 = FP32 * h * bs if p != FP32 else 0   # x.float() is a new tensor only when x is bf16
    # pow() saves its input: the fp32 copy (bf16) or the layer input itself (fp32)
    t["rmsnorm_inputs_fp32"] = 2 * (norm_fp32 if p != FP32 else FP32 * h * bs)
    if tr("norm") or method == "full":
        t["rmsnorm_normalized"] = 2 * p * h * bs
    if any(tr(n) for n in ("q_proj", "k_proj", "v_proj")):
        t["attn_norm_out"] = p * h * bs
    if flash:
        t["attn_qkv"] = p * (ad + 2 * kd) * bs
        t["attn_out"] = p * ad * bs
        t["attn_lse"] = FP32 * a * bs
    else:
        t["attn_qkv"] = p * 3 * ad * bs if c.n_kv_heads != c.n_heads else p * (ad + 2 * kd) * bs
        t["attn_scores"] = (FP32 + (p if p != FP32 else 0)) * a * s * bs
    if tr("o_proj") and not flash:   # SDPA's output is already (B, T, a, d): its merge is a view
        t["attn_merged"] = p * ad * bs
    if any(tr(n) for n in ("gate_proj", "up_proj")):
        t["mlp_norm_out"] = p * h * bs
    t["mlp_gate_up_act"] = 3 * p * I * bs
    if tr("down_proj"):
        t["mlp_product"] = p * I * bs
    if method in LORA_LIKE:
        r = info["rank"]
        t["lora_Ax"] = p * r * len(info["targets"]) * bs
        if method == "dora":   # (m/||W'|| - 1) * base + (m/||W'||) * lora: both outputs are saved
            outs = {"q_proj": ad, "k_proj": kd, "v_proj": kd, "o_proj": h, "gate_proj": I, "up_proj": I,
                    "down_proj": h}
            t["dora_base_and_lora_out"] = 2 * p * bs * sum(outs[n] for n in info["targets"])
    if method in ("ia3", "vera"):
        shapes = linear_shapes(c)
        if method == "ia3":
            t["ia3_scaled_outputs"] = p * bs * sum(shapes[n][0] for n in info["targets"] if n not in info["feedforward"])
        else:
            t["vera_Ax_and_BAx"] = p * bs * sum(info["rank"] + shapes[n][0] for n in info["targets"])
    if method == "houlsby":    # two adapters: input y (h), down output and GELU output (m each)
        m = info["adapter_size"]
        t["houlsby_adapters"] = 2 * p * (h + 2 * m) * bs
    return t


def final_norm_saved(c: ArchConfig, method: str, p: int, b: int, s: int) -> float:
    """The last RMSNorm before lm_head: fp32 input copy + (full FT) normalized x and lm_head's input."""
    bs, h = b * s, c.hidden_size
    return FP32 * h * bs + (2 * p * h * bs if method == "full" else 0)


def rope_tables(c: ArchConfig, p: int, b: int, s: int) -> float:
    """cos and sin, (B, T, d) each in the compute dtype, computed once and saved by every layer's RoPE."""
    return 2 * p * b * s * c.head_dim


def grad_residual(c: ArchConfig, b: int, s: int) -> float:
    """Gradient of the residual stream in and out of an RMSNorm, which computes its backward in fp32."""
    return 2 * FP32 * c.hidden_size * b * s


def layer_backward_transient(c: ArchConfig, p: int, b: int, s: int, flash: bool) -> float:
    """Extra tensors while one layer runs backward: grads replace the saved tensors they consume, so the
    excess is about two of the widest (MLP: I wide; eager attention: the (a, s) score gradient in fp32)."""
    bs = b * s
    widest = max(p * c.intermediate_size * bs, (0 if flash else FP32 * c.n_heads * s * bs))
    return 2 * widest + grad_residual(c, b, s)


def activation_terms(c: ArchConfig, method: str, info: dict, p: int, b: int, s: int, flash: bool,
                     checkpointing: str) -> dict:
    """``{"terms": {name: bytes}, "peak": bytes, "phase": ...}`` for the whole model, logits excluded.

    The peak is the larger of two moments: (A) the loss backward, when every saved tensor and the logits'
    fp32 buffers are alive, and (B) the backward of the last layer, which under checkpointing first
    recomputes that layer's saved set. ``logits_bytes`` is reported separately; phase B keeps only the
    logits themselves (held by the model output).
    """
    L, h, bs = c.n_layers, c.hidden_size, b * s
    per = layer_saved(c, method, info, p, b, s, flash)
    layer = sum(per.values())
    saved = L * p * h * bs if checkpointing == "full" else L * layer
    common = saved + rope_tables(c, p, b, s)
    phase_a = common + final_norm_saved(c, method, p, b, s) + grad_residual(c, b, s)
    recompute = layer if checkpointing == "full" else 0
    # QLoRA: backward through a 4-bit linear dequantizes its weight to the compute dtype first (one at a time)
    dequant = p * max(o * i for o, i in linear_shapes(c).values()) if method == "qlora" else 0
    phase_b = common + recompute + layer_backward_transient(c, p, b, s, flash) + dequant \
        - (logits_bytes(c, b, s, p) - p * b * s * c.vocab_size)
    name = "layer inputs, L*h (checkpointed)" if checkpointing == "full" else f"saved per layer x L"
    terms = {name: saved, "rope cos/sin": rope_tables(c, p, b, s)}
    if phase_a >= phase_b:
        terms["final norm saved"] = final_norm_saved(c, method, p, b, s)
        terms["residual grads (fp32)"] = grad_residual(c, b, s)
        where = "loss backward"
    else:
        if recompute:
            terms["one layer recomputed"] = recompute
        terms["layer backward transient"] = layer_backward_transient(c, p, b, s, flash)
        if dequant:
            terms["dequantized NF4 weight (largest linear)"] = dequant
        terms["logits fp32 buffers freed"] = -(logits_bytes(c, b, s, p) - p * b * s * c.vocab_size)
        where = "last layer backward"
    # kept_per_layer: what one more decoder layer keeps until backward (its input only under full checkpointing)
    return {"terms": terms, "per_layer": per, "kept_per_layer": saved / L, "peak": max(phase_a, phase_b),
            "phase": where}


def korthikanti_layer(c: ArchConfig, b: int, s: int, recompute: bool = False) -> dict[str, float]:
    """The closed form of Korthikanti et al. 2022 (arXiv:2205.05198, §4.1): activation bytes one GPT-style
    layer saves, 16-bit activations + 1-byte dropout masks, no tensor/sequence parallelism, every weight
    training, no FlashAttention; h = hidden, a = heads. By tensor:

        attention   QKV input 2sbh · Q, K 4sbh · softmax 2as²b · its dropout mask as²b · dropout out 2as²b
                    · V 2sbh · output-projection input 2sbh · dropout mask sbh      = 11sbh + 5as²b
        MLP         first linear input 2sbh · GeLU input 8sbh · second linear input 8sbh · mask sbh = 19sbh
        LayerNorms  two inputs 4sbh
        total       sbh(34 + 5as/h)            full recomputation: the layer input only, 2sbh

    Our Llama layer differs on purpose (SwiGLU, RMSNorm, GQA, no dropout, flash): `layer_saved` walks it."""
    h, a = c.hidden_size, c.n_heads
    sbh, as2b = s * b * h, a * s * s * b
    if recompute:
        return {"layer input 2sbh": 2 * sbh}
    return {"attention 11sbh": 11 * sbh, "attention scores 5as^2b": 5 * as2b, "MLP 19sbh": 19 * sbh,
            "LayerNorm inputs 4sbh": 4 * sbh}


def korthikanti_total(c: ArchConfig, b: int, s: int, recompute: bool = False) -> float:
    """sbh(34 + 5as/h) bytes per layer (2sbh with full recomputation)."""
    return float(sum(korthikanti_layer(c, b, s, recompute).values()))


def inference_transient(c: ArchConfig, p: int, b: int, s: int, flash: bool) -> float:
    """Prefill under no_grad keeps nothing for backward: the peak is one layer's widest moment, the MLP's
    gate and up (I each) plus its input, or eager attention's (a, s, s) scores in fp32 and compute dtype."""
    bs = b * s
    mlp = p * (2 * c.intermediate_size + c.hidden_size) * bs
    attn = 0 if flash else (FP32 + p) * c.n_heads * s * bs
    return max(mlp, attn) + p * c.hidden_size * bs      # + the residual stream


def logits_bytes(c: ArchConfig, b: int, s: int, p: int) -> float:
    """lm_head output (p) + fp32 log-softmax saved by the loss + its gradient and the gradient it returns."""
    n = b * s * c.vocab_size
    return n * (p + 3 * FP32)
