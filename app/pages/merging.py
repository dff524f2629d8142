"""Concept page: merging adapters. Text from content/pages/merging/; picture: TIES/DARE on two task vectors computed
live by labs.methods.merging; lab `merging` (two adapters merged every way, scored on both tasks; new chat tokens)."""
from __future__ import annotations

import pandas as pd
import streamlit as st
import torch
from plotly.subplots import make_subplots

from app.concept import Concept, render, result_view
from app.i18n import t
from app.ui import topic_cards
from labs.methods import merging

PAGE = "merging"
PICTURE_METHODS = ("task_arithmetic", "ties", "dare_linear", "dare_ties", "magnitude_prune")
SIZE, RANK, SHOWN = 48, 4, 16


def task_vectors(overlap: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two rank-4 task vectors (SIZE, SIZE) of equal norm: τ_b = overlap·τ_a + √(1 − overlap²)·(an independent one)."""
    g = torch.Generator().manual_seed(seed)
    make = lambda: torch.randn(SIZE, RANK, generator=g) @ torch.randn(RANK, SIZE, generator=g)  # noqa: E731
    a, other = make(), make()
    a, other = a / a.norm(), other / other.norm()
    return a, overlap * a + (1 - overlap ** 2) ** 0.5 * other


@st.cache_data(show_spinner=False, max_entries=256)
def picture_data(method: str, density: float, overlap: float, seed: int) -> dict:
    a, b = task_vectors(overlap, seed)
    merged = merging.combine([a, b], [1.0, 1.0], method, density=density,
                             generator=torch.Generator().manual_seed(seed))
    kept, opposite = merging.sign_conflicts(a, b, density)
    cos = lambda x, y: float((x.flatten() @ y.flatten()) / max(float(x.norm() * y.norm()), 1e-30))  # noqa: E731
    return {"a": a[:SHOWN, :SHOWN].tolist(), "b": b[:SHOWN, :SHOWN].tolist(), "m": merged[:SHOWN, :SHOWN].tolist(),
            "cos_a": cos(merged, a), "cos_b": cos(merged, b), "cos_ab": cos(a, b),
            "zero": float((merged == 0).float().mean()),
            "conflict": opposite / max(kept, 1),
            "ratio": float(merged.norm() / (a + b).norm())}


def picture() -> None:
    c1, c2, c3, c4 = st.columns(4)
    method = c1.selectbox(t("merging.pic.method"), PICTURE_METHODS, index=1, key="merging.pic.method")
    density = c2.slider(t("merging.pic.density"), 0.05, 1.0, 0.3, 0.05, key="merging.pic.density",
                        help=t("merging.pic.density_help"))
    overlap = c3.slider(t("merging.pic.overlap"), -0.9, 0.9, 0.0, 0.1, key="merging.pic.overlap",
                        help=t("merging.pic.overlap_help"))
    seed = int(c4.number_input(t("merging.pic.seed"), 0, 999, 0, key="merging.pic.seed"))
    d = picture_data(method, density, overlap, seed)
    fig = make_subplots(rows=1, cols=3, subplot_titles=("τ_a", "τ_b", t("merging.pic.merged", method=method)))
    lim = max(abs(x) for m in (d["a"], d["b"], d["m"]) for row in m for x in row) or 1.0
    for col, key in enumerate(("a", "b", "m"), start=1):
        fig.add_heatmap(z=d[key], colorscale="RdBu", zmid=0, zmin=-lim, zmax=lim, showscale=col == 3, row=1, col=col)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(fig, key="merging.pic.fig")
    m1, m2, m3, m4, m5 = st.columns(5)
    m1.metric(t("merging.pic.cos_a"), f"{d['cos_a']:.3f}")
    m2.metric(t("merging.pic.cos_b"), f"{d['cos_b']:.3f}")
    m3.metric(t("merging.pic.zero"), f"{d['zero']:.0%}")
    m4.metric(t("merging.pic.conflict"), f"{d['conflict']:.0%}")
    m5.metric(t("merging.pic.ratio"), f"{d['ratio']:.2f}")
    st.caption(t("merging.pic.caption", size=SIZE, rank=RANK, shown=SHOWN, cos=f"{d['cos_ab']:.2f}"))


def _acc(row: dict, task: str) -> float:
    return row[task]["choice_accuracy"]


@result_view("rows", empty="merging.res.empty")
def render_result(res: dict, run) -> None:
    rows = res["rows"]
    a, b = res["task_a"], res["task_b"]
    st.markdown(f"#### {t('merging.res.table')}")
    table = [{t("merging.res.method"): r["method"], t("merging.res.density"): r["density"],
              f"{a} ({t('merging.res.choice')})": _acc(r, a), f"{b} ({t('merging.res.choice')})": _acc(r, b),
              f"{a} EM": r[a]["eval_accuracy"], f"{b} EM": r[b]["eval_accuracy"],
              t("merging.res.normalized"): (r["normalized"][a] + r["normalized"][b]) / 2,
              t("merging.res.zero"): r["sparsity"]["zero_fraction"]} for r in rows]
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")
    fig = make_subplots(rows=1, cols=2, subplot_titles=(t("merging.res.bars"), t("merging.res.sweep")))
    names = [r["method"] for r in rows]
    for task, color in ((a, "#636efa"), (b, "#ef553b")):
        fig.add_bar(x=names, y=[_acc(r, task) for r in rows], name=task, marker_color=color, row=1, col=1)
        fig.add_hline(y=res["chance"][task], line_dash="dot", line_color=color, row=1, col=1)
        for method, dash in (("ties", "solid"), ("dare_linear", "dash")):
            pts = [r for r in res.get("sweep", []) if r["method"] == method]
            fig.add_scatter(x=[r["density"] for r in pts], y=[_acc(r, task) for r in pts], mode="lines+markers",
                            name=f"{method} · {task}", line=dict(color=color, dash=dash), row=1, col=2)
    fig.update_xaxes(title_text=t("merging.res.density"), row=1, col=2)
    fig.update_yaxes(title_text=t("merging.res.choice"), range=[0, 1.02])
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.3))
    st.plotly_chart(fig, key=f"merging.res.fig.{run.id}")
    st.caption(t("merging.res.chance_note", a=a, b=b, ca=f"{res['chance'][a]:.2f}", cb=f"{res['chance'][b]:.2f}"))
    inter = res.get("interference", {}).get("all")
    if inter:
        c1, c2, c3 = st.columns(3)
        c1.metric(t("merging.res.cosine"), f"{inter['cosine']:.3f}")
        c2.metric(t("merging.res.conflict"), f"{inter['sign_conflict_fraction']:.1%}")
        c3.metric(t("merging.res.kept_both"), f"{inter['kept_by_both']:,}")
    tokens = res.get("new_tokens")
    if tokens:
        st.markdown(f"#### {t('merging.res.tokens', task=tokens['task'])}")
        st.dataframe(pd.DataFrame([{
            t("merging.res.variant"): v, t("merging.res.params"): r["trainable_params"],
            t("merging.res.em"): r["final"]["eval_accuracy"], t("merging.res.end_acc"): r["end_token_accuracy"],
            t("merging.res.row_change"): sum(r["row_change"].values()) / len(r["row_change"]),
            t("merging.res.ua_cos"): r["user_assistant_cosine"]} for v, r in tokens["runs"].items()]),
            hide_index=True, width="stretch")
        st.caption(t("merging.res.tokens_note", tokens=" ".join(tokens["tokens"])))


render(Concept(PAGE, picture, labs=[("merging", render_result)], cards=lambda: topic_cards("merging", "merging.cards"),
               equation=r"\tau_t = s_t B_t A_t,\quad \Delta W_{\mathrm{TA}} = \textstyle\sum_t w_t \tau_t,\quad "
                        r"\Delta W_{\mathrm{TIES}} = \frac{\sum_t w_t \hat\tau_t\,[\mathrm{sgn}\,\hat\tau_t = \gamma]}"
                        r"{\#\{t:\ \mathrm{sgn}\,\hat\tau_t = \gamma\}},\quad "
                        r"\tilde\tau_t = \frac{m_t \odot \tau_t}{1-p},\ m_t \sim \mathrm{Bernoulli}(1-p)"))
