"""Concept page: QLoRA. why → math → instant picture (flow + memory, no training) → lab → seen → interview.

The picture's sizes come from labs.budget for a real architecture; the lab's numbers from a run
(labs.experiments.qlora): three variants trained on the bundled model, memory measured from their tensors.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.concept import Concept, render, result_view
from app.i18n import t
from app.ui import related_cards
from labs.experiments import qlora as Q

PAGE = "qlora"
MODELS = ("llama-2-7b", "llama-2-13b", "llama-65b", "llama-2-70b", "llama-3-8b", "mistral-7b")
LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
REFERENCE_GB = 48              # the single-GPU line the paper's 65B claim is about
COLORS = {"qlora": "#636efa", "lora": "#ef553b", "full": "#00cc96"}
CATEGORIES = ("weights", "quant_constants", "trainable", "gradients", "optimizer")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def flow_dot(f: dict) -> str:
    """Graphviz DOT of one QLoRA linear, forward (solid) and backward (dashed)."""
    shape = f"{f['out']}×{f['in']}"
    return f"""digraph G {{
rankdir=LR; node [shape=box, style="rounded,filled", fillcolor="#f4f4f8", fontsize=11]; edge [fontsize=10];
x [label="x (bf16)", fillcolor="#ffffff"];
W [label="{t('qlora.flow.codes')}\\n{shape} · {_size(f['codes_bytes'])}\\n+ {t('qlora.flow.scales')} {_size(f['scale_bytes'])}", fillcolor="#dde3ff"];
D [label="{t('qlora.flow.dequant')}\\nŴ tile (bf16)\\n{t('qlora.flow.full_would')} {_size(f['bf16_tile_bytes'])}"];
M [label="x Ŵᵀ (bf16 matmul)"];
A [label="A ({f['r']}×{f['in']})\\n{t('qlora.flow.trainable')}", fillcolor="#ffe3dd"];
B [label="B ({f['out']}×{f['r']})\\n{t('qlora.flow.trainable')}", fillcolor="#ffe3dd"];
S [label="+ s·(x Aᵀ) Bᵀ"];
y [label="y (bf16)", fillcolor="#ffffff"];
W -> D [label="{t('qlora.flow.each_call')}"]; x -> M; D -> M; x -> A; A -> B; M -> S; B -> S; S -> y;
y -> B [style=dashed, color="#cc3333", label="∂L/∂B"]; y -> A [style=dashed, color="#cc3333", label="∂L/∂A"];
y -> x [style=dashed, color="#cc3333", label="∂L/∂x = g Ŵ + …"];
W -> W [style=invis];
}}"""


def picture() -> None:
    c1, c2, c3 = st.columns(3)
    model = c1.selectbox(t("qlora.pic.model"), MODELS, index=2, key="pic.model")
    layer = c2.selectbox(t("qlora.pic.layer"), LAYERS, key="pic.layer")
    r = c3.number_input(t("qlora.pic.r"), value=16, step=1, key="pic.r")
    c4, c5 = st.columns(2)
    seq = c4.select_slider(t("qlora.pic.seq"), [256, 512, 1024, 2048, 4096, 8192, 16384], value=512, key="pic.seq")
    dq = c5.checkbox(t("qlora.pic.dq"), value=True, key="pic.dq")
    if not 1 <= r <= 1024:
        st.error(t("qlora.bad_r", value=r))
        return
    f = Q.flow_numbers(model, layer, int(r), 64, dq)
    st.graphviz_chart(flow_dot(f))
    st.caption(t("qlora.pic.flow_note", lora=f["lora_params"], lora_bytes=_size(f["lora_bytes_bf16"]),
                 codes=_size(f["codes_bytes"]), tile=_size(f["bf16_tile_bytes"])))
    bars = Q.memory_bars(model, int(r), int(seq), 1, dq)
    fig = go.Figure()
    labels = {"lora_bf16": t("qlora.pic.lora16"), "qlora_nf4": t("qlora.pic.qlora4")}
    for cat in ("frozen weights", "quant constants", "adapter grads + optimizer", "activations", "logits + overhead"):
        fig.add_bar(y=[labels[k] for k in bars], x=[v[cat] / 1e9 for v in bars.values()], name=t(f"qlora.cat.{cat}"),
                    orientation="h")
    fig.add_vline(x=REFERENCE_GB, line_dash="dash", annotation_text=f"{REFERENCE_GB} GB")
    fig.update_layout(barmode="stack", height=260, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="GB",
                      title=t("qlora.pic.memory", model=model, seq=seq), legend=dict(orientation="h", y=-0.4))
    st.plotly_chart(fig, key="pic.memory")
    m = st.columns(2)
    for col, k in zip(m, bars):
        col.metric(labels[k], f"{bars[k]['total'] / 1e9:.1f} GB")


# ── the run's result ──────────────────────────────────────────────────────────────────────────────────


def _variants_table(res: dict) -> None:
    rows = []
    for kind, v in res["variants"].items():
        rows.append({t("qlora.col.variant"): kind, t("qlora.col.trainable"): f"{v['trainable_params']:,}",
                     t("qlora.col.start_loss"): f"{v['base']['eval_loss']:.4f}",
                     t("qlora.col.final_loss"): f"{v['final']['eval_loss']:.4f}",
                     t("lab.accuracy"): f"{v['final']['eval_accuracy']:.3f}",
                     t("qlora.col.choice"): f"{v['final'].get('choice_accuracy', float('nan')):.3f}",
                     t("qlora.col.sec_step"): f"{v['seconds_per_step']:.3f}",
                     t("qlora.col.memory"): _size(v["memory"]["total"]),
                     t("qlora.col.peak_cuda"): _size(v["peak_cuda_bytes"]) if v.get("peak_cuda_bytes") else "—"})
    st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)


def _memory_chart(res: dict, key: str) -> None:
    fig = go.Figure()
    kinds = list(res["variants"])
    for cat in CATEGORIES:
        fig.add_bar(x=kinds, y=[res["variants"][k]["memory"][cat] / 2**20 for k in kinds], name=t(f"qlora.mem.{cat}"))
    fig.update_layout(barmode="stack", height=320, margin=dict(l=10, r=10, t=40, b=10), yaxis_title="MiB",
                      title=t("qlora.res.memory"), legend=dict(orientation="h", y=-0.3))
    st.plotly_chart(fig, key=f"{key}.memory")


def _curves(res: dict, key: str) -> None:
    fig = go.Figure()
    for kind, v in res["variants"].items():
        fig.add_scatter(x=list(range(1, len(v["loss_curve"]) + 1)), y=v["loss_curve"], name=kind, mode="lines",
                        line=dict(color=COLORS.get(kind)))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=t("lab.step"),
                      yaxis_title=t("lab.loss"), legend=dict(orientation="h", y=-0.3))
    st.plotly_chart(fig, key=f"{key}.curves")


def _merge(res: dict) -> None:
    mg = res.get("merge")
    if not mg:
        return
    st.markdown(f"**{t('qlora.res.merge')}**")
    rows = []
    for mode in ("unmerged", "dequantized", "requantized", "fp32_base"):
        m = mg[mode]
        rows.append({t("qlora.col.mode"): t(f"qlora.merge.{mode}"), t("qlora.col.precision"): m.get("precision", "nf4 + LoRA"),
                     t("qlora.col.logit_diff"): f"{m.get('max_abs_logit_diff', 0.0):.3g}",
                     t("qlora.col.final_loss"): f"{m['eval_loss']:.4f}", t("lab.accuracy"): f"{m['eval_accuracy']:.3f}",
                     t("qlora.col.choice"): f"{m.get('choice_accuracy', float('nan')):.3f}"})
    st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)


@result_view("variants", empty="qlora.res.empty")
def render_result(res: dict, run) -> None:
    key = f"qlora.res.{run.id}"
    q = res["variants"].get("qlora", {})
    bits = q.get("base_bits", {})
    st.caption(t("qlora.res.header", task=res["task"], chance=res["chance"], device=res["device"], seconds=res["seconds"],
                 bits=bits.get("bits_per_param", float("nan")), base=_size(bits.get("bytes", 0)),
                 fp32=_size(4 * bits.get("weights", 0))))
    _variants_table(res)
    _memory_chart(res, key)
    _curves(res, key)
    _merge(res)
    if res.get("adapter"):
        st.caption(t("qlora.res.adapter", size=_size(res["adapter"]["bytes"]), files=", ".join(res["adapter"]["files"])))
    st.info(t("qlora.res.paging_cpu" if not res["paging"]["possible"] else "qlora.res.paging_gpu"))


def card_links() -> None:
    related_cards(lambda c: c.page == PAGE or c.lab == PAGE, "qlora.cards", "qlora.cards_unavailable")


render(Concept(PAGE, picture, layout="beside", labs=[("qlora", render_result)], cards=card_links,
               equation=r"h = \operatorname{dequant}(W^{\text{NF4}}, c)\,x + s\,BAx,\qquad "
                        r"\frac{\partial L}{\partial W^{\text{NF4}}}\ \text{not computed}"))
