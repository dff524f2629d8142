"""Concept page: scaling out — DDP → ZeRO-1/2/3 → FSDP, LoRA and QLoRA under FSDP. Text from
content/pages/scaling/; the picture is the VRAM calculator (labs.budget) for 7B/13B/70B on 1/2/8 GPUs; lab `fsdp`
checks it on real ranks."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.concept import Concept, render, result_view
from app.i18n import t
from app.ui import topic_cards
from labs.budget import estimate

PAGE = "scaling"
MODELS = ("llama-2-7b", "llama-2-13b", "llama-2-70b")
GPU_COUNTS = (1, 2, 8)
METHODS = ("full", "lora", "qlora")
COLORS = {"full": "#636efa", "lora": "#ef553b", "qlora": "#00cc96"}
ANSWER = (("llama-2-70b", "full", 8, 3), ("llama-2-70b", "lora", 8, 3), ("llama-2-70b", "qlora", 2, 3),
          ("llama-2-70b", "qlora", 1, 0))


@st.cache_data(show_spinner=False)
def figures(model: str, method: str, gpus: int, zero: int) -> dict:
    """Per-GPU GB (total, model states), comm GB per step, and which card sizes it fits."""
    r = estimate(model, method, rank=16, gpus=gpus, zero=zero if gpus > 1 else 0)
    m = r["memory_bytes"]
    states = m["weights"] + m["quant_constants"] + m["gradients"] + m["optimizer"]
    return {"total": m["total"] / 1e9, "states": states / 1e9, "comm": r["comm_bytes_per_step"]["total"] / 1e9,
            "fits": [gb for gb in (24, 80) if r["fits"][str(gb)]]}


def picture() -> None:
    """The calculator for 7B/13B/70B on 1/2/8 GPUs at the chosen ZeRO stage: a table and a chart."""
    zero = st.radio(t("scaling.pic.zero"), (0, 1, 2, 3), index=3, horizontal=True, key="scaling.pic.zero")
    rows, fig = [], go.Figure()
    for method in METHODS:
        xs, ys = [], []
        for model in MODELS:
            for gpus in GPU_COUNTS:
                f = figures(model, method, gpus, zero)
                rows.append({t("scaling.pic.model"): model, t("scaling.pic.gpus"): gpus,
                             t("scaling.pic.method"): method, t("scaling.pic.per_gpu"): round(f["total"], 1),
                             t("scaling.pic.states"): round(f["states"], 1), t("scaling.pic.comm"): round(f["comm"], 2),
                             t("scaling.pic.fits"): " ".join(f"≤{gb} GB" for gb in f["fits"]) or "—"})
                xs.append(f"{model.removeprefix('llama-2-')} ×{gpus}")
                ys.append(f["total"])
        fig.add_bar(x=xs, y=ys, name=method, marker_color=COLORS[method])
    for gb in (24, 80):
        fig.add_hline(y=gb, line_dash="dot", line_color="#888", annotation_text=f"{gb} GB")
    fig.update_layout(barmode="group", yaxis_type="log", yaxis_title=t("scaling.pic.per_gpu"), height=360,
                      title=t("scaling.pic.chart"), margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h"))
    left, right = st.columns([3, 2])
    with left:
        st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True, height=380)
    with right:
        st.plotly_chart(fig, key="scaling.pic.fig")
    st.caption(t("scaling.pic.caption"))


def _status(e: dict) -> str:
    return "✅" if e["ok"] else ("↔ " + t("scaling.res.by_padding") if e.get("explained_by_padding") else "❌")


def _run_name(strategy: str, method: str, ranks: int) -> str:
    return t(f"scaling.strategy.{strategy}", n=ranks) + " · " + method


def _check_table(entries: list[dict], tol: float, ranks: int) -> pd.DataFrame:
    padded = any("padding_aware" in e for e in entries)
    rows = []
    for e in entries:
        item = "weights_step" if e.get("item") == "weights" and e["zero"] == 2 else e.get("item")
        what = (f"{_run_name(e['strategy'], e['method'], ranks)} (ZeRO-{e['zero']}): {t('scaling.item.' + item)}"
                if item else e["what"])
        row = {t("scaling.res.what"): what, t("scaling.res.measured"): f"{e['measured']:,}",
               t("scaling.res.predicted"): f"{e['predicted']:,}", t("scaling.res.err"): f"{e['rel_err']:.3%}",
               t("scaling.res.ok", tol=f"{tol:.0%}"): _status(e)}
        if padded:
            row[t("scaling.res.padded")] = f"{e['padding_aware']:,}" if "padding_aware" in e else "—"
        rows.append(row)
    return pd.DataFrame(rows)


@result_view("memory_check", "comm_check", empty="scaling.res.empty")
def render_result(res: dict, run) -> None:
    """A finished fsdp run: headline metrics, memory and communication checks, step times, padding."""
    c1, c2, c3, c4 = st.columns(4)
    c1.metric(t("scaling.res.ranks"), f"{res['world_size']} ({res['backend']})")
    c2.metric(t("scaling.res.loss_diff"), f"{res['max_loss_diff']:.1e}")
    c3.metric(t("scaling.res.max_err"), f"{res['max_rel_err']:.3%}")
    c4.metric(t("scaling.res.seconds"), f"{res['seconds']:.0f} s")
    st.markdown(f"#### {t('scaling.res.memory')}")
    st.dataframe(_check_table(res["memory_check"], res["tolerance"], res["world_size"]), hide_index=True,
                 use_container_width=True)
    st.markdown(f"#### {t('scaling.res.comm')}")
    st.dataframe(_check_table(res["comm_check"], res["tolerance"], res["world_size"]), hide_index=True,
                 use_container_width=True)
    st.markdown(f"#### {t('scaling.res.time')}")
    runs = res.get("runs", {})
    st.dataframe(pd.DataFrame([{t("scaling.res.series"): _run_name(v["strategy"], v["method"], res["world_size"]),
                                t("scaling.res.s_per_step"): round(v["seconds_per_step"], 4)}
                               for v in runs.values()]), hide_index=True)
    st.caption(t("scaling.res.time_caveat", ranks=res["world_size"], device=res["device"],
                 threads=res.get("torch_threads_per_rank", 1)))
    sharded = next(((name, v) for name, v in runs.items() if v.get("shards")), None)
    if sharded:
        name, v = sharded
        st.caption(t("scaling.res.padding", ranks=res["world_size"], padding=f"{v['shards']['padding_bytes']:,} B",
                     series=_run_name(v["strategy"], v["method"], res["world_size"]),
                     per_rank=", ".join(f"{m['weights']:,} B" for m in v["memory_per_rank"])))


def answer_numbers() -> None:
    st.markdown(f"**{t('scaling.numbers.title')}**")
    lines = []
    for model, method, gpus, zero in ANSWER:
        f = figures(model, method, gpus, zero)
        lines.append(t("scaling.numbers.row", model=model, method=method, gpus=gpus, zero=zero, total=f["total"],
                       states=f["states"], comm=f["comm"]))
    st.markdown("\n".join(lines))


def closing() -> None:
    """After the interview section: the calculator's numbers for the answer, the calculator link, the cards."""
    answer_numbers()
    st.markdown(t("scaling.calc_link"))
    topic_cards(PAGE, "scaling.cards")
    st.markdown(f"[{t('scaling.all_cards')}](/flashcards?topic={PAGE})")


render(Concept(PAGE, picture, layout="below", labs=[("fsdp", render_result)], cards=closing))
