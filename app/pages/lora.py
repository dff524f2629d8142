"""Concept page: LoRA. why → math → instant picture (no training) → lab → what you should have seen → interview.

Every number on the picture is computed here and now from the widgets and the bundled model's real
weights (labs.experiments.lora's picture functions); every number under the lab comes from a run.
"""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from app.concept import Concept, base_model, render, result_view
from app.i18n import t
from app.ui import related_cards
from labs.experiments import lora as L

PAGE = "lora"
MAX_SCALE_RANK = 128   # the x-range of the scaling curves: the largest rank the lab sweeps


@st.cache_resource(show_spinner=False)
def base_weights() -> dict:
    return L.weight_matrices(base_model()[0])


@st.cache_data(show_spinner=False, max_entries=64)
def spectrum_of(name: str) -> dict:
    return {k: v.tolist() for k, v in L.spectrum(base_weights()[name]).items()}


def picture() -> None:
    weights = base_weights()
    names = list(weights)
    c1, c2, c3 = st.columns(3)
    name = c1.selectbox(t("lora.pic.matrix"), names, index=0, key="pic.matrix",
                        format_func=lambda n: f"{n} ({weights[n].shape[0]}×{weights[n].shape[1]})")
    W0 = weights[name]
    d, k = W0.shape
    r = c2.slider(t("lora.pic.rank"), 1, min(d, k), min(8, d, k), key="pic.r")
    alpha = c3.number_input(t("lora.pic.alpha"), min_value=0.01, max_value=1024.0, value=16.0, key="pic.alpha")
    c4, c5 = st.columns(2)
    rslora = c4.checkbox(t("lora.pic.rslora"), value=False, key="pic.rslora")
    b_zero = c5.checkbox(t("lora.pic.b_zero"), value=False, key="pic.b_zero")
    if not (0.01 <= alpha <= 1024):
        st.error(t("lora.bad_alpha", value=alpha))
        return
    up = L.lowrank_update(d, k, r, alpha, rslora, b_zero)
    m = st.columns(4)
    m[0].metric(t("lora.pic.lora_params"), f"{up['lora_params']:,}", help="r(d + k)")
    m[1].metric(t("lora.pic.full_params"), f"{up['full_params']:,}", help="d·k")
    m[2].metric(t("lora.pic.percent"), f"{100 * up['lora_params'] / up['full_params']:.2f}%")
    m[3].metric(t("lora.pic.measured_rank"), f"{up['rank']}", help=t("lora.pic.rank_help"))

    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"W0 = {name}", f"ΔW = s·BA (s = {up['scaling']:.4g})"))
    fig.add_trace(go.Heatmap(z=W0.numpy(), coloraxis="coloraxis"), 1, 1)
    fig.add_trace(go.Heatmap(z=up["delta"].numpy(), coloraxis="coloraxis2"), 1, 2)
    fig.update_layout(height=330, margin=dict(l=10, r=10, t=40, b=10),
                      coloraxis=dict(colorscale="RdBu", cmid=0, showscale=False),
                      coloraxis2=dict(colorscale="RdBu", cmid=0, showscale=False))
    fig.update_yaxes(autorange="reversed")
    st.plotly_chart(fig, key="pic.heatmaps")

    sv = up["singular_values"].tolist()
    bars = go.Figure(go.Bar(x=list(range(1, len(sv) + 1)), y=sv))
    bars.update_layout(height=260, margin=dict(l=10, r=10, t=40, b=10), title=t("lora.pic.sv_delta"),
                       xaxis_title="i", yaxis_title="σᵢ(ΔW)")
    st.plotly_chart(bars, key="pic.sv")

    spec = spectrum_of(name)
    idx = list(range(1, len(spec["sv_weight"]) + 1))
    sfig = make_subplots(rows=1, cols=2, subplot_titles=(t("lora.pic.spectrum"), t("lora.pic.rank_error")))
    sfig.add_scatter(x=idx, y=spec["sv_weight"], name=t("lora.pic.real"), mode="lines", row=1, col=1)
    sfig.add_scatter(x=idx, y=spec["sv_gauss"], name=t("lora.pic.gauss"), mode="lines", row=1, col=1)
    ranks = list(range(len(spec["err_weight"])))
    sfig.add_scatter(x=ranks, y=spec["err_weight"], name=t("lora.pic.real"), mode="lines", row=1, col=2,
                     showlegend=False, line=dict(color="#636efa"))
    sfig.add_scatter(x=ranks, y=spec["err_gauss"], name=t("lora.pic.gauss"), mode="lines", row=1, col=2,
                     showlegend=False, line=dict(color="#ef553b"))
    sfig.add_vline(x=r, line_dash="dot", row=1, col=2)
    sfig.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))
    st.plotly_chart(sfig, key="pic.spectrum")
    st.caption(t("lora.pic.rank_error_note", r=r, real=100 * spec["err_weight"][r],
                 gauss=100 * spec["err_gauss"][r]))

    rr = list(range(1, MAX_SCALE_RANK + 1))
    scale = go.Figure()
    scale.add_scatter(x=rr, y=[alpha / x for x in rr], name="α/r", mode="lines")
    scale.add_scatter(x=rr, y=[alpha / math.sqrt(x) for x in rr], name="α/√r (rsLoRA)", mode="lines")
    scale.add_scatter(x=rr, y=[2.0 for _ in rr], name="α = 2r → α/r = 2", mode="lines", line=dict(dash="dash"))
    scale.add_vline(x=min(r, MAX_SCALE_RANK), line_dash="dot")
    scale.update_layout(height=280, margin=dict(l=10, r=10, t=40, b=10), title=t("lora.pic.scale"),
                        xaxis=dict(title="r", type="log"), yaxis=dict(title="s", type="log"),
                        legend=dict(orientation="h", y=-0.3))
    st.plotly_chart(scale, key="pic.scale")


# ── the run's result ──────────────────────────────────────────────────────────────────────────────────


def _curves(variants: list[dict], key: str) -> None:
    fig = go.Figure()
    for v in variants:
        fig.add_scatter(x=list(range(1, len(v["loss_curve"]) + 1)), y=v["loss_curve"], name=v["series"], mode="lines")
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=t("lab.step"),
                      yaxis_title=t("lab.loss"), legend=dict(orientation="h", y=-0.3))
    st.plotly_chart(fig, key=key)


def _opt(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def _table(rows: list[dict]) -> None:
    st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)


def _init(res: dict, variants: list[dict], key: str) -> None:
    st.markdown(f"**{t('lora.res.init')}**")
    _curves(variants, f"{key}.init")
    _table([{t("lora.col.scheme"): v["init"], t("lora.col.logit_diff"): f"{v['step0_logit_diff']:.3g}",
             t("lora.col.base_loss"): f"{res['base']['eval_loss']:.4f}",
             t("lora.col.step0_loss"): f"{v['step0_eval_loss']:.4f}",
             t("lora.col.final_loss"): f"{v['final_eval_loss']:.4f}",
             "‖∂L/∂A‖ (step 1)": f"{v['grad_A_step1']:.3g}", "‖∂L/∂B‖ (step 1)": f"{v['grad_B_step1']:.3g}",
             "max|ΔA|": f"{v['max_change_A']:.3g}", "max|ΔB|": f"{v['max_change_B']:.3g}"} for v in variants])
    zero = res["findings"]["init"].get("both_zero")
    if zero:
        st.caption(t("lora.res.both_zero", loss=zero["step0_eval_loss"], range=zero["eval_loss_range"],
                     ga=zero["grad_A_step1"], gb=zero["grad_B_step1"]))


def _rank(res: dict, variants: list[dict], key: str) -> None:
    f = res["findings"]["rank"]
    st.markdown(f"**{t('lora.res.rank')}**")
    fig = go.Figure()
    for rule, label in (("alpha/r", "α/r"), ("alpha/sqrt(r)", "α/√r (rsLoRA)")):
        fig.add_scatter(x=f[rule]["ranks"], y=f[rule]["final_eval_loss"], name=label, mode="lines+markers")
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), xaxis=dict(title="r", type="log"),
                      yaxis_title=t("lora.col.final_loss"), legend=dict(orientation="h", y=-0.3))
    st.plotly_chart(fig, key=f"{key}.rank")
    st.caption(t("lora.res.stall", r=f["stall_rank_alpha_r"], top=f["largest_rank"], gap=f["gap_at_largest_rank"]))
    _curves(variants, f"{key}.rank.curves")


def _loraplus(res: dict, variants: list[dict], key: str) -> None:
    st.markdown(f"**{t('lora.res.loraplus')}**")
    _curves(variants, f"{key}.lp")
    _table([{t("lora.col.variant"): v["series"], t("lora.col.mean_loss"): f"{v['mean_loss']:.4f}",
             t("lora.col.final_loss"): f"{v['final_eval_loss']:.4f}",
             t("lab.accuracy"): f"{v['final_eval_accuracy']:.3f}",
             t("lora.col.choice_acc"): _opt(v.get("final_choice_accuracy"))} for v in variants])


def _targets(res: dict, variants: list[dict], key: str) -> None:
    st.markdown(f"**{t('lora.res.targets')}**")
    fig = go.Figure(go.Scatter(x=[v["trainable_params"] for v in variants],
                               y=[v["final_eval_accuracy"] for v in variants], text=[v["target"] for v in variants],
                               mode="markers+text", textposition="top center"))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), xaxis=dict(title=t("lora.col.trainable"),
                      type="log"), yaxis=dict(title=t("lab.accuracy"), range=[0, 1.05]))
    st.plotly_chart(fig, key=f"{key}.targets")
    _table([{"target_modules": v["target"], t("lora.col.layers"): v["lora_layers"],
             t("lora.col.trainable"): f"{v['trainable_params']:,}", "%": f"{v['trainable_percent']:.3f}",
             t("lab.accuracy"): f"{v['final_eval_accuracy']:.3f}", t("lora.col.choice_acc"): _opt(v.get("final_choice_accuracy")),
             t("lora.col.final_loss"): f"{v['final_eval_loss']:.4f}",
             t("lora.col.sec_step"): f"{v['seconds_per_step']:.3f}"} for v in variants])


def _merge(res: dict, key: str) -> None:
    mg = res["merge"]
    st.markdown(f"**{t('lora.res.merge', series=mg['series'])}**")
    c = st.columns(3)
    c[0].metric(t("lora.res.merge_diff"), f"{mg['max_abs_diff_merged_vs_unmerged']:.3g}")
    c[1].metric(t("lora.res.adapter_diff"), f"{mg['max_abs_diff_unmerged_vs_base']:.3g}")
    c[2].metric(t("lora.res.adapter_bytes"), f"{mg['adapter_bytes'] / 1024:.1f} KiB")
    lat = mg["latency_ms"]
    fig = go.Figure(go.Bar(x=list(lat), y=list(lat.values()), text=[f"{x:.2f} ms" for x in lat.values()]))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), yaxis_title="ms",
                      title=t("lora.res.latency", n=mg["latency_repeats"], shape="×".join(map(str, mg["batch_shape"]))))
    st.plotly_chart(fig, key=f"{key}.latency")


@result_view("variants", "merge", empty="lora.res.empty")
def render_result(res: dict, run) -> None:
    variants = res["variants"]
    key = f"lora.res.{run.id}"
    st.caption(t("lora.res.header", task=res["task"], device=res["device"], seconds=res.get("seconds", 0),
                 base=res["base"]["eval_loss"], acc=res["base"]["eval_accuracy"]))
    by = lambda part: [v for v in variants if v["part"] == part]  # noqa: E731
    for part, draw in (("init", _init), ("rank", _rank), ("loraplus", _loraplus), ("targets", _targets)):
        if by(part) and part in res["findings"]:
            draw(res, by(part), key)
    _merge(res, key)


def card_links() -> None:
    related_cards(lambda c: c.page == PAGE or c.lab == "lora", "lora.cards", "lora.cards_unavailable")


render(Concept(PAGE, picture, layout="beside", labs=[("lora", render_result)], cards=card_links,
               equation=r"W_{\text{merged}} = W_0 + s\,BA,\qquad s = \frac{\alpha}{r}\ \text{(LoRA)}\quad\text{or}\quad "
                        r"s = \frac{\alpha}{\sqrt{r}}\ \text{(rsLoRA)}"))
