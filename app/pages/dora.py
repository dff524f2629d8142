"""Concept page: DoRA. Text from content/pages/dora/; picture on a real weight of the bundled model; lab `dora`."""
from __future__ import annotations

import pandas as pd
import streamlit as st
from plotly.subplots import make_subplots

from app.concept import Concept, base_linears, render, result_view
from app.i18n import t
from app.ui import topic_cards
from labs.experiments.dora import decomposition_picture

PAGE = "dora"
COLORS = {"full-ft": "#636efa", "lora": "#ef553b", "dora": "#00cc96"}


@st.cache_data(show_spinner=False, max_entries=256)
def picture_data(name: str, r: int, size: float, mag: float) -> dict:
    return decomposition_picture(base_linears()[name], r, size, mag, seed=0)


def picture() -> None:
    weights = base_linears()
    names = list(weights)
    c1, c2, c3, c4 = st.columns(4)
    name = c1.selectbox(t("dora.pic.matrix"), names, index=0, key="dora.pic.matrix")
    w0 = weights[name]
    r = c2.slider(t("dora.pic.rank"), 1, min(32, *w0.shape), 4, key="dora.pic.rank")
    size = c3.slider(t("dora.pic.size"), 0.0, 1.0, 0.2, 0.01, key="dora.pic.size",
                     help=t("dora.pic.size_help"))
    mag = c4.slider(t("dora.pic.mag"), -0.5, 0.5, 0.0, 0.01, key="dora.pic.mag", help=t("dora.pic.mag_help"))
    pic = picture_data(name, r, size, mag)
    st.caption(t("dora.pic.shape", name=name, out=w0.shape[0], inp=w0.shape[1]))
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("LoRA ΔM", f"{pic['lora'][0]:.4f}")
    m2.metric("LoRA ΔD", f"{pic['lora'][1]:.5f}")
    m3.metric("DoRA ΔM", f"{pic['dora'][0]:.4f}")
    m4.metric("DoRA ΔD", f"{pic['dora'][1]:.5f}")
    fig = make_subplots(rows=1, cols=2, subplot_titles=(t("dora.pic.rows"), t("dora.pic.cloud")))
    rows = list(range(len(pic["m0"])))
    fig.add_scatter(x=rows, y=pic["m0"], name="m₀ = ‖W₀‖", mode="lines", line=dict(color="#888"), row=1, col=1)
    fig.add_scatter(x=rows, y=pic["m_lora"], name="LoRA ‖W₀+ΔW‖", mode="lines",
                    line=dict(color=COLORS["lora"]), row=1, col=1)
    fig.add_scatter(x=rows, y=pic["m_dora"], name="DoRA m", mode="lines", line=dict(color=COLORS["dora"], dash="dot"),
                    row=1, col=1)
    for method in ("lora", "dora"):
        pts = pic["cloud"][method]
        fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers", name=f"{method} (ΔM, ΔD)",
                        marker=dict(color=COLORS[method], size=6), row=1, col=2)
    fig.update_xaxes(title_text=t("dora.pic.row"), row=1, col=1)
    fig.update_yaxes(title_text=t("dora.pic.norm"), row=1, col=1)
    fig.update_xaxes(title_text="ΔM", row=1, col=2)
    fig.update_yaxes(title_text="ΔD", row=1, col=2)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    st.plotly_chart(fig, key="dora.pic.fig")
    slope = {k: v["slope"] for k, v in pic["cloud_slope"].items()}
    st.caption(t("dora.pic.slopes", lora=_num(slope["lora"]), dora=_num(slope["dora"])))


def _num(x, fmt: str = ".3g") -> str:
    return "—" if x is None else format(x, fmt)


@result_view("runs", empty="dora.res.empty")
def render_result(res: dict, run) -> None:
    runs = res["runs"]
    st.markdown(f"#### {t('dora.res.summary')}")
    table = [{t("dora.res.method"): m, t("dora.res.base_acc"): r["base"]["eval_accuracy"],
              t("dora.res.final_acc"): r["final"]["eval_accuracy"], t("dora.res.final_loss"): r["final"]["eval_loss"],
              t("dora.res.params"): r["trainable_params"], t("dora.res.s_step"): r["seconds_per_step"],
              t("dora.res.merge"): r.get("merge_max_abs_diff")} for m, r in runs.items()]
    st.dataframe(pd.DataFrame(table), hide_index=True, use_container_width=True)
    cost = res.get("cost", {})
    if cost:
        c1, c2, c3 = st.columns(3)
        c1.metric(t("dora.res.extra_params"), f"{cost['extra_params']:,}",
                  help=t("dora.res.extra_help", n=f"{cost['expected_extra_params']:,}"))
        c2.metric(t("dora.res.time_ratio"), f"{cost['dora_over_lora_time']:.2f}×")
        c3.metric(t("dora.res.chance"), f"{res.get('chance', 0):.2f}")
    points = res.get("points", [])
    types = sorted({p["type"] for p in points})
    if not points:
        return
    st.markdown(f"#### {t('dora.res.analysis')}")
    default = types.index("q_proj") if "q_proj" in types else 0
    chosen = st.selectbox(t("dora.res.inspect"), ["all"] + types, index=default + 1, key=f"dora.inspect.{run.id}")
    shown = [p for p in points if chosen == "all" or p["type"] == chosen]
    methods = list(dict.fromkeys(p["method"] for p in shown))
    slopes = res.get("slopes", {})
    fig = make_subplots(rows=1, cols=len(methods), subplot_titles=[
        f"{m}: slope {_num(slopes.get(m, {}).get(chosen, {}).get('slope'))}" for m in methods])
    steps = sorted({p["step"] for p in shown})
    for i, m in enumerate(methods, start=1):
        mine = [p for p in shown if p["method"] == m]
        fig.add_scatter(x=[p["dm"] for p in mine], y=[p["dd"] for p in mine], mode="markers", showlegend=False,
                        text=[f"{p['module']} @ {p['step']}" for p in mine],
                        marker=dict(color=[steps.index(p["step"]) for p in mine], colorscale="Viridis", size=8,
                                    symbol=[p["layer"] % 8 for p in mine], cmin=0, cmax=max(len(steps) - 1, 1)),
                        row=1, col=i)
        fit = slopes.get(m, {}).get(chosen, {})
        if fit.get("slope") is not None:
            xs = [min(p["dm"] for p in mine), max(p["dm"] for p in mine)]
            fig.add_scatter(x=xs, y=[fit["intercept"] + fit["slope"] * x for x in xs], mode="lines",
                            line=dict(color=COLORS.get(m, "#333")), showlegend=False, row=1, col=i)
        fig.update_xaxes(title_text="ΔM", row=1, col=i)
    fig.update_yaxes(title_text="ΔD", row=1, col=1)
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(fig, key=f"dora.scatter.{run.id}.{chosen}")
    st.caption(t("dora.res.scatter_note", steps=", ".join(map(str, steps))))
    rows = [{t("dora.res.method"): m, t("dora.res.type"): k, "slope": v["slope"], "Pearson r": v["pearson_r"],
             "n": v["n"]} for m, per in slopes.items() for k, v in per.items()]
    st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)


render(Concept(PAGE, picture, labs=[("dora", render_result)], cards=lambda: topic_cards("dora", "dora.cards"),
               equation=r"W' = m\,\frac{W_0 + sBA}{\lVert W_0 + sBA \rVert_c},\qquad "
                        r"\Delta M = \tfrac{1}{k}\textstyle\sum_n |m^n_t - m^n_0|,\quad "
                        r"\Delta D = \tfrac{1}{k}\textstyle\sum_n \big(1 - \cos(W^n_t, W^n_0)\big)"))
