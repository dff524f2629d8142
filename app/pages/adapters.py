"""Concept page: adapters (Houlsby bottleneck adapters, LLaMA-Adapter).

why → math → instant picture (Houlsby: parameters and the extra sequential steps per layer; LLaMA-Adapter:
one query's attention split between tokens and gated prompts, computed with the bundled model's real top
layer) → lab (Houlsby vs LLaMA-Adapter vs LoRA, trained live) → what you should have seen → interview → cards.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.concept import Concept, base_model, render, result_view
from app.i18n import t
from app.ui import concept_section, related_cards
from labs.experiments.adapters import SERIES, formula
from labs.inference_cost import model_configs

PAGE, LAB = "adapters", "adapters"
BASE_OPS = ["RMSNorm", "attention", "+ residual", "RMSNorm", "MLP", "+ residual"]
HOULSBY_OPS = ["RMSNorm", "attention", "down d→m", "f", "up m→d", "+ skip", "+ residual", "RMSNorm", "MLP",
               "down d→m", "f", "up m→d", "+ skip", "+ residual"]


def _timeline() -> go.Figure:
    """The sequential steps one token takes through a layer, with and without Houlsby's two adapters."""
    fig = go.Figure()
    for row, ops in ((t("ad.tl_base"), BASE_OPS), (t("ad.tl_houlsby"), HOULSBY_OPS)):
        for i, op in enumerate(ops):
            extra = op.startswith(("down", "up", "f", "+ skip"))
            fig.add_bar(x=[1], y=[row], base=[i], orientation="h", text=op, textposition="inside",
                        marker_color="#e6550d" if extra else "#9ecae1", showlegend=False, hoverinfo="text")
    fig.update_layout(barmode="overlay", height=170, margin=dict(l=10, r=10, t=10, b=10),
                      xaxis_title=t("ad.tl_axis"))
    return fig


def gated_attention(K: int, gate: float, seed: int, text: str):
    """(tokens, attention on them, on the K gated prompts, prompt/token output ratio): labs.methods.adapters."""
    from labs.methods.adapters import gated_attention as probe

    model, tok = base_model()
    r = probe(model, tok, text, K, gate, seed)
    return r["tokens"], r["token_attention"], r["prompt_attention"], r["prompt_over_token"]


def picture() -> None:
    configs = model_configs()
    c1, c2 = st.columns(2)
    with c1:
        name = st.selectbox(t("ad.model"), list(configs), key="ad.model")
        design = st.radio(t("ad.design"), ("houlsby", "llama-adapter"), format_func=SERIES.get, horizontal=True,
                          key="ad.design")
    cfg = configs[name]
    L, d = cfg.num_hidden_layers, cfg.hidden_size
    left, right = st.columns([3, 2])
    with left:
        if design == "houlsby":
            m = c2.slider(t("ad.m"), 1, 1024, 64 if d >= 1024 else 16, key="ad.m")
            f = formula("houlsby", cfg, {"bottleneck": m})
            a, b, c = st.columns(3)
            a.metric(t("ad.houlsby_params"), f"{f['adapters']:,}", help=f["text"])
            b.metric(t("ad.approx"), f"{f['approx']:,}")
            c.metric(t("ad.norms"), f"{f['norms']:,}")
            if m >= d:
                st.warning(t("ad.not_bottleneck", m=m, d=d))
            st.plotly_chart(_timeline(), key="ad.timeline")
            st.caption(t("ad.tl_caption", L=L, extra=8 * L))
        else:
            La = c2.slider(t("ad.layers"), 1, L, min(L, 30 if L >= 30 else 2), key="ad.layers")
            K = c2.slider(t("ad.K"), 1, 64, 10, key="ad.K")
            gate = st.slider(t("ad.gate"), 0.0, 1.0, 0.0, 0.05, key="ad.gate")
            f = formula("llama-adapter", cfg, {"adapter_layers": La, "adapter_len": K})
            a, b = st.columns(2)
            a.metric(t("ad.llama_params"), f"{f['value']:,}", help=f["text"])
            b.metric(t("ad.gates"), f"{f['gates']}")
            try:
                tokens, px, pp, ratio = gated_attention(K, gate, seed=0, text=t("ad.sentence"))
            except FileNotFoundError as err:
                st.info(t("ad.no_model", error=str(err)))
                return
            fig = go.Figure()
            fig.add_bar(x=[f"{i}:{s!r}" for i, s in enumerate(tokens)], y=px, name=t("ad.tokens"),
                        marker_color="#3182bd")
            fig.add_bar(x=[f"P{i + 1}" for i in range(K)], y=pp, name=t("ad.prompts"), marker_color="#e6550d")
            fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), yaxis_title=t("ad.attn_axis"),
                              legend=dict(orientation="h", y=1.1))
            st.plotly_chart(fig, key="ad.attn")
            st.caption(t("ad.attn_caption", tokens=f"{sum(px):.3f}", prompts=f"{sum(pp):.3f}",
                         ratio=f"{100 * ratio:.1f}%"))
    with right:
        concept_section(PAGE, "picture", header=False)


@result_view("variants", empty="ad.no_result")
def render_result(res: dict, run) -> None:
    r, variants = res, res["variants"]
    base_loss = r.get("base", {}).get("eval_loss")
    st.markdown(t("ad.result_params"))
    st.dataframe(pd.DataFrame([{
        t("ad.col_method"): v["series"], t("ad.col_trainable"): v["trainable_params"],
        t("ad.col_formula"): v.get("formula", {}).get("text", ""), t("ad.col_formula_value"): v.get("formula", {}).get("value"),
        t("ad.col_step0_loss"): v["base"]["eval_loss"], t("ad.col_step0_delta"): f"{v['step0_loss_change']:+.2e}",
        t("ad.col_final"): v["final"]["eval_accuracy"], t("ad.col_loss"): v["final"]["eval_loss"],
        t("ad.col_s_step"): v["seconds_per_step"]} for v in variants.values()]),
        hide_index=True, use_container_width=True)
    if base_loss is not None:
        st.caption(t("ad.base_line", loss=f"{base_loss:.4f}", acc=f"{r['base']['eval_accuracy']:.3f}",
                     chance=f"{r.get('chance', 0):.3f}"))
    gates = r.get("gates") or []
    if gates:
        fig = go.Figure()
        for j in range(len(gates[0])):
            fig.add_scatter(x=list(range(len(gates))), y=[g[j] for g in gates], mode="lines",
                            name=t("ad.gate_layer", layer=r.get("layers", 0) - len(gates[0]) + j + 1))
        fig.update_layout(height=300, xaxis_title=t("lab.step"), yaxis_title=t("ad.gate_axis"),
                          margin=dict(l=10, r=10, t=30, b=10))
        st.markdown(t("ad.result_gates"))
        st.plotly_chart(fig, key=f"ad.gates.{run.id}")
    latency = r.get("latency", {})
    if latency:
        st.markdown(t("ad.result_latency"))
        fig = go.Figure()
        rows = []
        for batch, lat in latency.items():
            names = list(lat)
            fig.add_bar(x=[SERIES.get(k, t("ad.base")) for k in names], y=[lat[k]["ms_per_token"] for k in names],
                        name=t("ad.batch", batch=batch))
            for k, v in lat.items():
                over_lora = v.get("overhead_vs_lora")
                rows.append({t("ad.col_batch"): int(batch), t("ad.col_method"): SERIES.get(k, t("ad.base")),
                             t("ad.ms_per_token"): v["ms_per_token"], t("ad.col_cpu"): v.get("cpu_ms_per_token"),
                             t("ad.col_over_base"): f"{100 * v['overhead_vs_base']:+.1f}%",
                             t("ad.col_over_lora"): "—" if over_lora is None else f"{100 * over_lora:+.1f}%"})
        fig.update_layout(barmode="group", height=300, yaxis_title=t("ad.ms_per_token"),
                          margin=dict(l=10, r=10, t=30, b=10))
        st.plotly_chart(fig, key=f"ad.lat.{run.id}")
        st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)


def card_links() -> None:
    related_cards(lambda c: c.topic == PAGE, "ad.cards", "ad.cards_unavailable", subheader=True)


render(Concept(PAGE, picture, layout="own", labs=[(LAB, render_result)], cards=card_links))
