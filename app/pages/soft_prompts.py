"""Concept page: soft prompts (prompt tuning, prefix tuning, P-tuning v2).

why → math → instant picture (where each method puts its vectors; parameters, KV cache and context for a
model you pick, from the labs' own formulas) → lab (three methods + a LoRA reference, trained live) →
what you should have seen → interview angle → flashcards.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.concept import Concept, render, result_view
from app.i18n import t
from app.ui import concept_section, related_cards
from labs.experiments.soft_prompts import SERIES, formula, geometry
from labs.inference_cost import model_configs

PAGE, LAB = "soft-prompts", "soft-prompts"
METHODS = ("prompt", "prefix", "ptuning-v2")
GRID_COLUMNS = 80          # the grid draws at most this many position columns; longer requests are scaled
BYTES_BF16 = 2


def _grid(method: str, layers: int, p: int, n: int) -> go.Figure:
    """Rows: the input embeddings and every layer; columns: positions. 2 = trainable, 1 = computed from it."""
    scale = max(1.0, (p + n) / GRID_COLUMNS)
    cp, cn = max(1, round(p / scale)), max(1, round(n / scale))
    rows = ["embed"] + [f"L{i}" for i in range(1, layers + 1)]
    z = []
    for r in range(len(rows)):
        if method == "prompt":
            virt = 2 if r == 0 else 1          # trained at the input; above it, ordinary hidden states
        else:
            virt = 0 if r == 0 else 2          # K/V slots in every layer, nothing at the input
        z.append([virt] * cp + [0] * cn)
    fig = go.Figure(go.Heatmap(z=z, y=rows, zmin=0, zmax=2, showscale=False, xgap=1, ygap=1,
                               colorscale=[[0, "#d9e2ec"], [0.5, "#9ecae1"], [1, "#e6550d"]]))
    fig.update_layout(height=140 + 12 * len(rows), margin=dict(l=10, r=10, t=30, b=10),
                      xaxis=dict(title=t("sp.grid_x", scale=f"{scale:.1f}"), showticklabels=False),
                      title=t("sp.grid_title"))
    return fig


def _context_bar(method: str, p: int, n: int, limit: int) -> go.Figure:
    fig = go.Figure()
    parts = [(t("sp.ctx_virtual"), p, "#e6550d"), (t("sp.ctx_request"), n, "#3182bd"),
             (t("sp.ctx_free"), max(limit - p - n, 0), "#d9e2ec")]
    for name, val, color in parts:
        fig.add_bar(x=[val], y=[""], orientation="h", name=f"{name}: {val:,}", marker_color=color)
    fig.update_layout(barmode="stack", height=150, margin=dict(l=10, r=10, t=10, b=10),
                      xaxis=dict(range=[0, limit], title=t("sp.ctx_axis", limit=f"{limit:,}")),
                      legend=dict(orientation="h", y=-0.6))
    return fig


def picture() -> None:
    configs = model_configs()
    c1, c2 = st.columns([1, 1])
    with c1:
        name = st.selectbox(t("sp.model"), list(configs), key="sp.model")
        method = st.radio(t("sp.method"), METHODS, format_func=lambda m: SERIES[m], horizontal=True, key="sp.method")
    cfg = configs[name]
    g = geometry(cfg)
    limit = int(g["max_positions"] or 2048)
    with c2:
        p = st.slider(t("sp.p"), 1, 512, 20, key="sp.p")
        n = st.slider(t("sp.n"), 1, limit, min(128, limit), key="sp.n")
    if p + n > limit:
        st.error(t("sp.too_long", p=p, n=n, limit=f"{limit:,}"))
        return
    f = formula(method, g, p, 4 * g["kv_dim"] if method == "ptuning-v2" else g["kv_dim"])
    kv_extra = p * g["layers"] * 2 * g["kv_dim"] * BYTES_BF16
    m1, m2, m3 = st.columns(3)
    m1.metric(t("sp.trainable"), f"{f['train']:,}", help=f["text"])
    m2.metric(t("sp.kept"), f"{f['kept']:,}")
    m3.metric(t("sp.kv_extra"), f"{kv_extra / 2**20:,.2f} MiB")
    if "hidden_formula" in f:
        st.caption(t("sp.gqa_note", hidden=f"{f['hidden_formula']:,}", kv=f"{f['kept']:,}",
                     ratio=f"{g['heads'] / g['kv_heads']:g}", heads=g["heads"], kv_heads=g["kv_heads"]))
    st.caption(t("sp.geometry", L=g["layers"], d=g["hidden"], heads=g["heads"], kv_heads=g["kv_heads"],
                 head_dim=g["head_dim"], kv_dim=g["kv_dim"]))
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(_grid(method, g["layers"], p, n), key="sp.grid")
        st.plotly_chart(_context_bar(method, p, n, limit), key="sp.ctx")
    with right:
        concept_section(PAGE, "picture", header=False)


@result_view("variants", empty="sp.no_result")
def render_result(res: dict, run) -> None:
    r, variants = res, res["variants"]
    rows = []
    for m, v in variants.items():
        f = v.get("formula", {})
        rows.append({t("sp.col_method"): v["series"], t("sp.col_trainable"): v["trainable_params"],
                     t("sp.col_formula"): f.get("text", ""), t("sp.col_formula_value"): f.get("train"),
                     t("sp.col_kept"): f.get("kept"),
                     t("sp.col_step0"): v["base"]["eval_accuracy"], t("sp.col_final"): v["final"]["eval_accuracy"],
                     t("sp.col_loss"): v["final"]["eval_loss"], t("sp.col_s_step"): v["seconds_per_step"]})
    st.markdown(t("sp.result_params"))
    st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)
    fig = go.Figure(go.Bar(x=[v["series"] for v in variants.values()],
                           y=[v["final"]["eval_accuracy"] for v in variants.values()]))
    fig.add_hline(y=r.get("chance", 0), line_dash="dot", annotation_text=t("sp.chance"))
    fig.add_hline(y=r.get("base", {}).get("eval_accuracy", 0), line_dash="dash", annotation_text=t("sp.base"))
    fig.update_layout(height=300, yaxis=dict(range=[0, 1.02], title=t("lab.accuracy")),
                      margin=dict(l=10, r=10, t=30, b=10))
    st.plotly_chart(fig, key=f"sp.acc.{run.id}")

    lat = r.get("latency", {})
    if lat:
        st.markdown(t("sp.result_latency", ref=SERIES.get(r.get("latency_reference"), "base")))
        names = list(lat)
        label = lambda k: SERIES.get(k, t("sp.base"))  # noqa: E731
        fig = go.Figure(go.Bar(x=[label(k) for k in names], y=[lat[k]["ms_per_token"] for k in names],
                               error_y=dict(type="data", symmetric=False,
                                            array=[lat[k]["ms_per_token_q75"] - lat[k]["ms_per_token"] for k in names],
                                            arrayminus=[lat[k]["ms_per_token"] - lat[k]["ms_per_token_q25"] for k in names])))
        fig.update_layout(height=300, yaxis_title=t("sp.ms_per_token"), margin=dict(l=10, r=10, t=30, b=10))
        st.plotly_chart(fig, key=f"sp.lat.{run.id}")
        st.dataframe(pd.DataFrame([{t("sp.col_method"): label(k), t("sp.ms_per_token"): v["ms_per_token"],
                                    t("sp.col_cpu"): v.get("cpu_ms_per_token"),
                                    t("sp.col_over_base"): f"{100 * v['overhead_vs_base']:+.1f}%",
                                    t("sp.col_over_ref"): f"{100 * v['overhead_vs_ref']:+.1f}%",
                                    t("sp.col_positions"): v["cache_len"], t("sp.col_extra"): v["extra_positions"],
                                    t("sp.col_kv_bytes"): v["kv_cache_bytes"], t("sp.col_prefill"): v["prefill_ms"]}
                                   for k, v in lat.items()]), hide_index=True, use_container_width=True)
    merge = r.get("merge") or {}
    share = merge.get("prefix_share")
    if share:
        layers = share["layers"]
        fig = go.Figure(go.Bar(x=[f"L{i + 1}" for i in range(len(layers))], y=[x["mean"] for x in layers],
                               error_y=dict(type="data", symmetric=False,
                                            array=[x["max"] - x["mean"] for x in layers],
                                            arrayminus=[x["mean"] - x["min"] for x in layers])))
        fig.update_layout(height=280, yaxis=dict(range=[0, 1], title=t("sp.share_axis")),
                          margin=dict(l=10, r=10, t=30, b=10))
        st.markdown(t("sp.result_merge", method=SERIES[merge["prefix_method"]], tokens=share["tokens"]))
        st.plotly_chart(fig, key=f"sp.share.{run.id}")
    if merge.get("lora_max_abs_logit_change") is not None:
        st.caption(t("sp.lora_merged", diff=f"{merge['lora_max_abs_logit_change']:.2e}"))


def card_links() -> None:
    related_cards(lambda c: c.topic == PAGE, "sp.cards", "sp.cards_unavailable", subheader=True)


render(Concept(PAGE, picture, layout="own", labs=[(LAB, render_result)], cards=card_links))
