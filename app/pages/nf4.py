"""Concept page: NF4. why → math → instant picture (no training) → lab → what you should have seen → interview.

The picture quantizes one real weight matrix of the bundled model (or a synthetic sample) with the project's
own kernels on every rerun; the lab's numbers come from a run (labs.experiments.nf4).
"""
from __future__ import annotations

from math import erf, sqrt

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from app import minilm_view
from app.concept import Concept, render, result_view
from app.i18n import t
from app.labview import lab_panel
from app.ui import related_cards
from labs import minilm as MINILM
from labs.experiments import nf4 as N

PAGE = "nf4"
COLORS = {"nf4": "#636efa", "fp4": "#ef553b", "int4": "#00cc96"}
GB = 1e9


MODELS = ("base", "minilm")   # the bundled Llama, or all-MiniLM-L6-v2 (labs.minilm)


@st.cache_resource(show_spinner=False)
def weight_names(model: str = "base") -> list[str]:
    return MINILM.weight_names() if model == "minilm" else N.weight_names()


@st.cache_resource(show_spinner=False, max_entries=32)
def weight(name: str):
    return MINILM.load_weight(name) if name.startswith("encoder.layer.") else N.load_weight(name)


@st.cache_data(show_spinner=False, max_entries=64)
def picture_of(source: str, name: str | None, blocksize: int, double_quant: bool, block: int) -> dict:
    w = weight(name) if source == "weights" else N.synthetic(source, (256, 256), like=weight(name) if name else None)
    return N.picture(w, blocksize, double_quant, block)


def codebook_chart() -> None:
    cb = N.codebook_table()
    z = cb["z_delta"]
    xs = [i / 100 for i in range(-110, 111)]
    cdf = [0.5 * (1 + erf(x * z / sqrt(2))) for x in xs]
    fig = go.Figure()
    fig.add_scatter(x=xs, y=cdf, mode="lines", name=t("nf4.pic.cdf", z=f"{z:.4f}"), line=dict(color="#999"))
    for fmt in N.FORMATS:
        lv = cb[fmt]
        fig.add_scatter(x=lv, y=[0.5 * (1 + erf(v * z / sqrt(2))) for v in lv], mode="markers",
                        name=fmt.upper(), marker=dict(color=COLORS[fmt], size=9 if fmt == "nf4" else 7,
                                                      symbol={"nf4": "circle", "fp4": "diamond", "int4": "square"}[fmt]))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), title=t("nf4.pic.codebook"),
                      xaxis_title=t("nf4.pic.level"), yaxis_title="Φ(level · Φ⁻¹(δ))", legend=dict(orientation="h", y=-0.25))
    st.plotly_chart(fig, key="pic.codebook")
    st.caption(t("nf4.pic.codebook_note", delta=N.NF4_OFFSET, z=f"{z:.4f}"))


def picture() -> None:
    codebook_chart()
    model = st.radio(t("minilm.pic.model"), MODELS, horizontal=True, key="pic.model",
                     format_func=lambda m: t(f"minilm.pic.model.{m}"))
    c1, c2 = st.columns(2)
    source = c1.selectbox(t("nf4.pic.source"), N.SOURCES, format_func=lambda s: t(f"nf4.src.{s}"), key="pic.source")
    try:
        names = weight_names(model)
    except (FileNotFoundError, OSError, ValueError, ImportError) as err:
        st.error(t("minilm.no_model" if model == "minilm" else "nf4.no_base", error=str(err)))
        return
    name = c2.selectbox(t("nf4.pic.matrix"), names, key="pic.matrix" if model == "base" else f"pic.matrix.{model}",
                        format_func=lambda n: f"{n} ({'×'.join(map(str, weight(n).shape))})")
    c3, c4, c5 = st.columns(3)
    blocksize = c3.select_slider(t("nf4.pic.blocksize"), N.BLOCKSIZES, value=64, key="pic.blocksize")
    dq = c4.checkbox(t("nf4.pic.dq"), value=True, key="pic.dq")
    numel = weight(name).numel() if source == "weights" else 256 * 256
    n_blocks = -(-numel // blocksize)
    block = c5.number_input(t("nf4.pic.block", n=n_blocks - 1), value=0, step=1, key="pic.block")
    if not 0 <= block < n_blocks:
        st.error(t("nf4.bad_block", value=block, hi=n_blocks - 1))
        return
    pic = picture_of(source, name, int(blocksize), bool(dq), int(block))
    m = st.columns(3)
    for col, fmt in zip(m, N.FORMATS):
        f = pic["formats"][fmt]
        col.metric(f"{fmt.upper()} · {t('nf4.bits')}", f"{f['bits_per_param']:.4f}")
        col.caption(t("nf4.pic.err", mse=f["mse"], rel=100 * f["rel_err"], exact=100 * f["max_exact"]))

    view = st.radio(t("nf4.pic.view"), ("pooled", "block"), horizontal=True, key="pic.view",
                    format_func=lambda v: t(f"nf4.view.{v}", b=block))
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        subplot_titles=[fmt.upper() for fmt in N.FORMATS])
    edges = pic["scaled_edges"]
    for i, fmt in enumerate(N.FORMATS, start=1):
        f = pic["formats"][fmt]
        if view == "pooled":
            fig.add_bar(x=[(a + b) / 2 for a, b in zip(edges, edges[1:])], y=pic["scaled_hist"], row=i, col=1,
                        marker_color="#bbb", showlegend=False, width=edges[1] - edges[0])
            lines = f["levels"]
        else:
            fig.add_histogram(x=pic["block_values"], nbinsx=40, row=i, col=1, marker_color="#bbb", showlegend=False)
            lines = f["block_levels"]
        for v in lines:
            fig.add_vline(x=v, line_color=COLORS[fmt], line_width=1.5, row=i, col=1)
    fig.update_layout(height=520, margin=dict(l=10, r=10, t=30, b=10), bargap=0)
    fig.update_xaxes(title_text=t("nf4.view.x_pooled") if view == "pooled" else t("nf4.view.x_block"), row=3, col=1)
    st.plotly_chart(fig, key="pic.hist")

    usage = make_subplots(rows=1, cols=3, subplot_titles=[fmt.upper() for fmt in N.FORMATS])
    for i, fmt in enumerate(N.FORMATS, start=1):
        f = pic["formats"][fmt]
        total = sum(f["usage"]) or 1
        usage.add_bar(x=[f"{v:+.3f}" for v in f["levels"]], y=[u / total for u in f["usage"]], row=1, col=i,
                      marker_color=COLORS[fmt], showlegend=False)
    usage.update_layout(height=280, margin=dict(l=10, r=10, t=40, b=10), title=t("nf4.pic.usage"))
    usage.update_yaxes(tickformat=".0%")
    st.plotly_chart(usage, key="pic.usage")


# ── the run's result ──────────────────────────────────────────────────────────────────────────────────


def _formats_table(res: dict) -> None:
    base = res["baseline"]
    rows = [{t("nf4.col.format"): "fp32", t("nf4.bits"): 32.0, t("nf4.col.bytes"): f"{res['quantized_params'] * 4 / 2**20:.2f} MiB",
             "MSE": 0.0, t("nf4.col.rel"): 0.0, t("nf4.col.lm_loss"): f"{base['lm_loss']:.4f}", "ppl": f"{base['ppl']:.2f}",
             **_task_cols(base)}]
    for fmt, f in res["formats"].items():
        rows.append({t("nf4.col.format"): fmt.upper(), t("nf4.bits"): round(f["bits_per_param"], 4),
                     t("nf4.col.bytes"): f"{f['bytes'] / 2**20:.2f} MiB", "MSE": f"{f['mse']:.3e}",
                     t("nf4.col.rel"): f"{100 * f['rel_err']:.2f}%", t("nf4.col.lm_loss"): f"{f['lm_loss']:.4f}",
                     "ppl": f"{f['ppl']:.2f}", **_task_cols(f)})
    st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)


def _task_cols(d: dict) -> dict:
    if "task_loss" not in d:
        return {}
    return {t("nf4.col.task_loss"): f"{d['task_loss']:.4f}", t("nf4.col.choice_acc"): f"{d['task_choice_accuracy']:.3f}"}


def _layers_chart(res: dict, key: str) -> None:
    fig = go.Figure()
    for fmt, f in res["formats"].items():
        names = [l["name"].replace("model.layers.", "L").replace(".self_attn", "").replace(".mlp", "") for l in f["layers"]]
        fig.add_bar(x=names, y=[100 * l["rel_err"] for l in f["layers"]], name=fmt.upper(), marker_color=COLORS[fmt])
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), barmode="group", title=t("nf4.res.layers"),
                      yaxis_title="‖W − Ŵ‖_F / ‖W‖_F (%)", legend=dict(orientation="h", y=-0.35))
    st.plotly_chart(fig, key=f"{key}.layers")


def _sweep_chart(res: dict, key: str) -> None:
    fig = go.Figure()
    for fmt in N.FORMATS:
        rows = [r for r in res["sweep"] if r["format"] == fmt]
        fig.add_scatter(x=[r["bits_per_param"] for r in rows], y=[r["mse"] for r in rows], name=fmt.upper(),
                        mode="lines+markers+text", text=[str(r["blocksize"]) for r in rows], textposition="top center",
                        marker_color=COLORS[fmt])
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), title=t("nf4.res.sweep", n=len(res["sweep_layers"])),
                      xaxis_title=t("nf4.bits"), yaxis=dict(title="MSE", type="log"), legend=dict(orientation="h", y=-0.3))
    st.plotly_chart(fig, key=f"{key}.sweep")


def _double(res: dict) -> None:
    d = res["double"]
    st.markdown(f"**{t('nf4.res.double')}**")
    c = st.columns(3)
    c[0].metric(t("nf4.res.bits_plain"), f"{d['bits_plain']:.4f}", help=t("nf4.res.formula", v=f"{d['bits_formula_plain']:.4f}"))
    c[1].metric(t("nf4.res.bits_dq"), f"{d['bits_dq']:.4f}", help=t("nf4.res.formula", v=f"{d['bits_formula_dq']:.4f}"))
    c[2].metric(t("nf4.res.mse_change"), f"{100 * (d['mse_dq'] / d['mse_plain'] - 1):+.3f}%")
    st.dataframe(pd.DataFrame([{t("nf4.col.model"): b["model"], t("nf4.col.quantized"): f"{b['quantized_params'] / 1e9:.2f} B",
                                "bf16 (GB)": f"{b['bf16_bytes'] / GB:.2f}",
                                t("nf4.col.plain_gb"): f"{b['plain_bytes'] / GB:.2f}", t("nf4.col.dq_gb"): f"{b['dq_bytes'] / GB:.2f}",
                                t("nf4.col.saved"): f"{b['saved_bytes'] / GB:.3f}",
                                t("nf4.col.saved_budget"): f"{b['saved_bytes_budget'] / GB:.3f}"} for b in d["big_models"]]),
                 hide_index=True, use_container_width=True)


def _checks(res: dict) -> None:
    st.markdown(f"**{t('nf4.res.roundtrip')}**")
    rows = []
    for fmt, modes in res["roundtrip"].items():
        for mode, r in modes.items():
            rows.append({t("nf4.col.format"): fmt.upper(), t("nf4.col.mode"): mode, t("nf4.col.codes_equal"): r["codes_equal"],
                         t("nf4.col.codes_diff"): r["codes_differing"], t("nf4.col.values_equal"): r["dequantized_equal"],
                         "max |Δŵ|": f"{r['max_abs_change']:.3g}"})
    st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)
    bnb = res["bnb"]
    st.markdown(f"**{t('nf4.res.bnb')}**")
    if not bnb.get("available"):
        st.info(t("nf4.res.bnb_missing", reason=bnb.get("reason", "?")))
        return
    (st.success if bnb["all_equal"] else st.error)(t("nf4.res.bnb_ok" if bnb["all_equal"] else "nf4.res.bnb_bad",
                                                     n=len(bnb["rows"]), version=bnb["version"]))
    st.dataframe(pd.DataFrame(bnb["rows"]), hide_index=True, use_container_width=True)


@result_view("formats", empty="nf4.res.empty")
def render_result(res: dict, run) -> None:
    key = f"nf4.res.{run.id}"
    if res.get("model") == "minilm":
        minilm_view.render_nf4(res, key)
        return
    minilm_view.model_caption(res)
    st.caption(t("nf4.res.header", n=res["n_layers_quantized"], params=res["quantized_params"], layers=res["layers"],
                 bs=res["blocksize"], dq=res["double_quant"], windows=res["eval_windows"], device=res["device"],
                 seconds=res["seconds"]))
    _formats_table(res)
    _layers_chart(res, key)
    _sweep_chart(res, key)
    _double(res)
    _checks(res)


def card_links() -> None:
    related_cards(lambda c: c.page == PAGE or c.lab == PAGE, "nf4.cards", "nf4.cards_unavailable")


def minilm_lab() -> None:
    """The second lab of the page: LoRA vs QLoRA fine-tuning of all-MiniLM-L6-v2 as a classifier."""
    st.subheader(t("minilm.cls.section"))
    st.markdown(t("minilm.cls.intro"))
    lab_panel("minilm-cls", render_result=minilm_view.render_cls)


render(Concept(PAGE, picture, layout="beside", labs=[("nf4", render_result), minilm_lab], cards=card_links,
               equation=r"\text{bits/param} = 4 + \frac{32}{B} \;\xrightarrow{\text{double quant}}\; "
                        r"4 + \frac{8}{B} + \frac{32}{256\,B} \qquad (B = 64:\ 4.5 \to 4.127)"))
