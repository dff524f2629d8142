"""Concept page: more PEFT methods (IA³, VeRA, PiSSA, LoftQ, GaLore). why → math → instant picture on a real
weight of the bundled model → lab `landscape` → what you should have seen → interview (RLHF/DPO, intruder
dimensions) → flashcards. Every number on the picture is computed from the widgets; every number under the
lab comes from a run."""
from __future__ import annotations

import pandas as pd
import streamlit as st
from plotly.subplots import make_subplots

from app.concept import Concept, base_linears, render
from app.i18n import pick, t
from app.ui import topic_cards
from labs.experiments import landscape as L

PAGE = "more-methods"
MEMORY = ("weights", "quant_constants", "trainable", "gradients", "optimizer")
COLORS = {"weights": "#9aa5b1", "quant_constants": "#f4a261", "trainable": "#2a9d8f", "gradients": "#e76f51",
          "optimizer": "#264653"}


@st.cache_data(show_spinner=False, max_entries=64)
def picture_data(name: str, r: int, loftq_iter: int, vera_r: int, ffn_input: bool) -> dict:
    return L.picture(base_linears()[name], r=r, loftq_iter=loftq_iter, vera_r=vera_r, ffn_input=ffn_input)


def draw_picture() -> None:
    weights = base_linears()
    names = list(weights)
    c1, c2 = st.columns(2)
    name = c1.selectbox(t("more.pic.matrix"), names, index=0, key="more.pic.matrix",
                        format_func=lambda n: f"{n} ({weights[n].shape[0]}×{weights[n].shape[1]})")
    r = c2.slider(t("more.pic.rank"), 1, 64, 8, key="more.pic.r")
    c3, c4, c5 = st.columns(3)
    loftq_iter = c3.slider(t("more.pic.loftq_iter"), 1, 5, 3, key="more.pic.loftq_iter")
    vera_r = c4.select_slider(t("more.pic.vera_r"), [32, 64, 128, 256, 512], 256, key="more.pic.vera_r")
    ffn_input = c5.toggle(t("more.pic.ffn"), value=name.endswith("down_proj"), key=f"more.pic.ffn.{name}")
    pic = picture_data(name, r, loftq_iter, vera_r, ffn_input)
    m1, m2, m3 = st.columns(3)
    m1.metric(t("more.pic.energy"), f"{pic['energy_top_r']:.1%}")
    m2.metric(t("more.pic.qlora_err"), f"{pic['quant_error']['qlora']:.4f}")
    m3.metric(t("more.pic.loftq_err"), f"{pic['quant_error']['loftq'][-1]:.4f}")
    fig = make_subplots(rows=1, cols=3, subplot_titles=(t("more.pic.spectrum"), t("more.pic.error"),
                                                        t("more.pic.counts")))
    S = pic["singular_values"]
    fig.add_bar(x=list(range(1, len(S) + 1)), y=S, marker_color=["#2a9d8f" if i < r else "#c9ced6" for i in range(len(S))],
                name="σᵢ", showlegend=False, row=1, col=1)
    rounds = list(range(0, loftq_iter + 1))
    fig.add_scatter(x=rounds, y=[pic["quant_error"]["qlora"]] * len(rounds), mode="lines", name="QLoRA (BA = 0)",
                    line=dict(color="#e76f51", dash="dash"), row=1, col=2)
    fig.add_scatter(x=rounds[1:], y=pic["quant_error"]["loftq"], mode="lines+markers", name="LoftQ",
                    line=dict(color="#264653"), row=1, col=2)
    methods = list(pic["trainable"])
    fig.add_bar(x=methods, y=[pic["trainable"][m] for m in methods], name=t("more.pic.trained"),
                marker_color="#2a9d8f", row=1, col=3)
    fig.add_bar(x=methods, y=[pic["optimizer_entries"][m] for m in methods], name=t("more.pic.state"),
                marker_color="#264653", row=1, col=3)
    fig.update_yaxes(type="log", row=1, col=3)
    fig.update_xaxes(title_text="i", row=1, col=1)
    fig.update_xaxes(title_text=t("more.pic.round"), row=1, col=2)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25),
                      barmode="group")
    st.plotly_chart(fig, key="more.pic.fig")
    ps = pic["pissa"]
    st.caption(t("more.pic.caption", name=name, out=pic["shape"][0], inp=pic["shape"][1], r=r,
                 res=f"{ps['residual_top_singular']:.4f}", sigma=f"{ps['sigma_r_plus_1']:.4f}",
                 principal=f"{ps['principal_fro']:.3f}"))


def _n(x, fmt: str = ".3g") -> str:
    return "—" if x is None else format(x, fmt)


def render_result(run) -> None:
    res = run.result or {}
    methods = res.get("methods", {})
    if not methods:
        st.info(t("more.res.empty"))
        return
    st.markdown(f"#### {t('more.res.summary')}")
    rows = [{t("more.res.method"): pick(r["label"]), t("more.res.params"): r["trainable_params"],
             t("more.res.base_acc"): r["base"]["eval_accuracy"], t("more.res.final_acc"): r["final"]["eval_accuracy"],
             t("more.res.choice_acc"): r["final"].get("choice_accuracy"), t("more.res.loss"): r["final"]["eval_loss"],
             t("more.res.s_step"): r["seconds_per_step"], t("more.res.start"): r["start"]["max_abs_logit_diff"],
             "lr": r["lr"]} for r in methods.values()]
    st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)
    st.caption(t("more.res.chance", chance=f"{res.get('chance', 0):.2f}", task=res.get("task", "")))
    st.markdown(f"#### {t('more.res.memory')}")
    fig = make_subplots(rows=1, cols=1)
    labels = [pick(r["label"]) for r in methods.values()]
    for cat in MEMORY:
        fig.add_bar(x=labels, y=[r["memory"][cat] / 2**20 for r in methods.values()], name=t(f"more.mem.{cat}"),
                    marker_color=COLORS[cat])
    fig.update_layout(barmode="stack", height=340, margin=dict(l=10, r=10, t=10, b=10), yaxis_title="MiB")
    st.plotly_chart(fig, key=f"more.mem.{run.id}")
    if res.get("galore_optimizer_ratio") is not None:
        st.caption(t("more.res.galore", ratio=f"{res['galore_optimizer_ratio']:.2f}"))
    gap = res.get("quant_gap")
    if gap:
        st.markdown(f"#### {t('more.res.gap')}")
        c1, c2, c3 = st.columns(3)
        c1.metric(t("more.res.lower_on"), f"{gap['lower_on']} / {gap['of']}")
        c2.metric(t("more.res.mean_red"), f"{gap['mean_reduction']:.1%}")
        c3.metric(t("more.res.kl_closed"), _n(gap.get("kl_gap_closed"), ".1%"))
        st.dataframe(pd.DataFrame(gap["matrices"]), hide_index=True, use_container_width=True)
    dense = {m: r["intruders"] for m, r in methods.items() if "intruders" in r}
    if dense:
        st.markdown(f"#### {t('more.res.intruders')}")
        any_one = next(iter(dense.values()))
        st.dataframe(pd.DataFrame([{t("more.res.method"): pick(methods[m]["label"]), t("more.res.intr_total"): v["total"],
                                    t("more.res.intr_with"): f"{v['with_any']} / {v['matrices']}"}
                                   for m, v in dense.items()]), hide_index=True, use_container_width=True)
        st.caption(t("more.res.intr_note", k=any_one["k"], eps=any_one["eps"]))
    if res.get("skipped"):
        st.warning(t("more.res.skipped", methods=", ".join(res["skipped"])))


render(Concept(PAGE, draw_picture, labs=[("landscape", render_result)],
               cards=lambda: topic_cards("more-methods", "more.cards", limit=8),
               equation=r"\underbrace{W^{\text{res}} + sBA = W}_{\text{PiSSA}},\quad "
                        r"\underbrace{\min_{Q,\,BA} \lVert W - \mathrm{deq}(Q) - sBA \rVert_F}_{\text{LoftQ}},\quad "
                        r"\underbrace{\Delta W = \Lambda_b B \Lambda_d A}_{\text{VeRA}},\quad "
                        r"\underbrace{W \leftarrow W - \eta\,\alpha\,P\,\mathrm{Adam}(P^\top G)}_{\text{GaLore}}"))
