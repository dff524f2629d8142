"""Concept page: multi-LoRA serving. Text from content/pages/serving/; picture from model shapes and an LRU
simulation (instant); lab `serving` (merge-swap vs per-group vs batched BGMV/SGMV, measured)."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from app.concept import Concept, render, result_view
from app.i18n import t
from app.ui import topic_cards
from labs.experiments.serving import TARGETS, cache_hit_rate, memory_curve
from labs.serving import STRATEGIES

PAGE = "serving"
COLORS = {"merge_swap": "#636efa", "per_group": "#ef553b", "batched": "#00cc96", "merged": "#ab63fa"}


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def picture() -> None:
    c1, c2, c3, c4 = st.columns(4)
    preset = c1.selectbox(t("serving.pic.model"), ["llama-7b", "bundled"], key="serving.pic.model")
    k_max = c2.slider(t("serving.pic.adapters"), 1, 256, 16, key="serving.pic.adapters")
    r = c3.select_slider(t("serving.pic.rank"), [4, 8, 16, 32, 64], 16, key="serving.pic.rank")
    targets = c4.selectbox(t("serving.pic.targets"), list(TARGETS), index=2, key="serving.pic.targets")
    d1, d2, d3 = st.columns(3)
    traffic = d1.radio(t("serving.pic.traffic"), ["uniform", "skewed"], horizontal=True, key="serving.pic.traffic")
    slots = d2.slider(t("serving.pic.slots"), 1, 256, 8, key="serving.pic.slots")
    batch = d3.slider(t("serving.pic.batch"), 1, 64, 16, key="serving.pic.batch")
    dtype = "bf16" if preset == "llama-7b" else "fp32"
    mem = memory_curve(preset, r, targets, dtype, k_max, slots)
    cache = cache_hit_rate(k_max, traffic, slots, batch)
    m1, m2, m3, m4 = st.columns(4)
    m1.metric(t("serving.pic.merged_total"), _gb(mem["merged"][-1]))
    m2.metric(t("serving.pic.shared_total"), _gb(mem["shared_device"][-1]))
    m3.metric(t("serving.pic.hit_rate"), f"{cache['hit_rate']:.0%}")
    m4.metric(t("serving.pic.distinct"), f"{cache['distinct_per_batch']:.1f}")
    st.caption(t("serving.pic.sizes", base=_gb(mem["base_bytes"]), adapter=_gb(mem["adapter_bytes"]), dtype=dtype))
    fig = make_subplots(rows=1, cols=2, subplot_titles=(t("serving.pic.mem_title"), t("serving.pic.batch_title")))
    fig.add_scatter(x=mem["K"], y=[b / 1e9 for b in mem["merged"]], name=t("serving.merged_copies"),
                    line=dict(color=COLORS["merged"]), row=1, col=1)
    fig.add_scatter(x=mem["K"], y=[b / 1e9 for b in mem["shared_device"]], name=t("serving.shared_base"),
                    line=dict(color=COLORS["batched"]), row=1, col=1)
    fig.update_xaxes(title_text=t("serving.K"), row=1, col=1)
    fig.update_yaxes(title_text="GB", type="log", row=1, col=1)
    rows = cache["batch"]
    layouts = {t("serving.pic.per_group"): rows, "BGMV": rows, "SGMV": sorted(rows)}
    for j, (name, order) in enumerate(layouts.items()):
        fig.add_bar(x=[1] * len(order), y=list(range(len(order))), base=j, orientation="h", width=0.9,
                    marker=dict(color=order, colorscale="Turbo", cmin=0, cmax=max(k_max - 1, 1)),
                    text=[str(a) for a in order], showlegend=False, row=1, col=2)
    fig.update_xaxes(tickvals=[j + 0.5 for j in range(3)], ticktext=list(layouts), row=1, col=2)
    fig.update_yaxes(title_text=t("serving.pic.row"), autorange="reversed", row=1, col=2)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))
    st.plotly_chart(fig, key="serving.pic.fig")
    st.caption(t("serving.pic.passes", groups=len(set(rows)), rows=len(rows)))


@result_view("strategies", empty="serving.res.empty")
def render_result(res: dict, run) -> None:
    strategies = res["strategies"]
    st.markdown(f"#### {t('serving.res.summary')}")
    table = [{t("serving.res.strategy"): t(f"serving.strategy.{s}"), t("serving.res.tps"): v["tokens_per_s"],
              t("serving.res.p50"): v["p50_s"], t("serving.res.p95"): v["p95_s"],
              t("serving.res.diff"): v["max_abs_diff"], t("serving.res.agree"): v["argmax_agree"],
              t("serving.res.loads"): v["adapter_loads"] if s == "batched" else None,
              t("serving.res.hit"): v["hit_rate"]} for s, v in strategies.items()]
    st.dataframe(pd.DataFrame(table), hide_index=True, use_container_width=True)
    st.caption(t("serving.res.effect", effect=f"{res.get('adapter_effect', 0):.3g}",
                 distinct=f"{res.get('distinct_per_batch', 0):.1f}", ranks=", ".join(map(str, sorted(set(res.get("ranks", [])))))))
    mem = res.get("memory", {})
    if mem:
        c1, c2, c3, c4 = st.columns(4)
        c1.metric(t("serving.res.base"), _gb(mem["base_bytes"]))
        c2.metric(t("serving.res.adapters"), _gb(mem["stacked_adapter_bytes"]),
                  help=t("serving.res.padding", waste=f"{mem['rank_padding_waste']:.0%}"))
        c3.metric(t("serving.shared_base"), _gb(mem["shared_bytes"]))
        c4.metric(t("serving.merged_copies"), _gb(mem["merged_copies_bytes"]))
        fig = go.Figure(go.Bar(x=[t("serving.shared_base"), t("serving.merged_copies")],
                               y=[mem["shared_bytes"] / 1e6, mem["merged_copies_bytes"] / 1e6],
                               marker_color=[COLORS["batched"], COLORS["merged"]]))
        fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), yaxis_title="MB",
                          title=t("serving.res.mem_title", K=res.get("adapters")))
        st.plotly_chart(fig, key=f"serving.mem.{run.id}")
    for key, x, title in (("sweep_k", "K", "serving.res.vs_k"), ("sweep_batch", "batch_size", "serving.res.vs_batch")):
        points = res.get(key) or []
        if len(points) < 2:
            continue
        fig = make_subplots(rows=1, cols=2, subplot_titles=(t("serving.res.tps"), t("serving.res.p95")))
        for s in STRATEGIES:
            xs = [p[x] for p in points]
            fig.add_scatter(x=xs, y=[p[s]["tokens_per_s"] for p in points], name=t(f"serving.strategy.{s}"),
                            line=dict(color=COLORS[s]), row=1, col=1)
            fig.add_scatter(x=xs, y=[p[s]["p95_s"] for p in points], showlegend=False,
                            line=dict(color=COLORS[s]), row=1, col=2)
        fig.update_xaxes(title_text=t("serving.K") if x == "K" else t("serving.batch"), type="log")
        fig.update_layout(height=330, margin=dict(l=10, r=10, t=40, b=10), title=t(title),
                          legend=dict(orientation="h", y=-0.3))
        st.plotly_chart(fig, key=f"serving.{key}.{run.id}")


def cards() -> None:
    st.markdown(t("serving.vllm"))
    topic_cards(PAGE, "serving.cards")
    st.markdown(f"[{t('serving.all_cards')}](/flashcards?topic={PAGE})")


render(Concept(PAGE, picture, labs=[("serving", render_result)], cards=cards,
               equation=r"y_i = W_0 x_i + s_{a(i)}\,B_{a(i)}\big(A_{a(i)} x_i\big),\qquad "
                        r"M_{\text{merged}} = K\,M_0 \;\;\text{vs}\;\; M_{\text{shared}} = M_0 + K_{\text{gpu}}\,M_a"))
