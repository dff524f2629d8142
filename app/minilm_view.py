"""Charts for runs on all-MiniLM-L6-v2: the NF4 lab with model = minilm, and the minilm-cls lab.

Presentation only: every number comes from the run's stored result (labs.minilm, labs.experiments.minilm_cls).
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.i18n import t

COLORS = {"nf4": "#636efa", "fp4": "#ef553b", "int4": "#00cc96", "full": "#ab63fa", "lora": "#636efa",
          "qlora": "#00cc96"}
MiB = 2**20


def model_caption(res: dict) -> None:
    """Which model the run used, on every result."""
    name = res.get("model_name") or ("sentence-transformers/all-MiniLM-L6-v2" if res.get("model") == "minilm"
                                     else t("minilm.model.base"))
    st.caption(t("minilm.model.used", model=name))


# ── NF4 lab, model = minilm ──────────────────────────────────────────────────────────────────────────


def _kurtosis(res: dict, key: str) -> None:
    stats = res["weight_stats"]
    fig = go.Figure()
    fig.add_bar(x=[s["short"] for s in stats], y=[max(s["kurtosis"], 1e-3) for s in stats], marker_color="#636efa",
                name=t("minilm.nf4.kurtosis"))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10), title=t("minilm.nf4.kurtosis_title"),
                      yaxis=dict(type="log", title=t("minilm.nf4.kurtosis")))
    st.plotly_chart(fig, key=f"{key}.kurt")
    lo, hi = res["kurtosis_range"]
    st.caption(t("minilm.nf4.kurtosis_note", lo=lo, hi=hi))
    names = [s["short"] for s in stats]
    worst = max(range(len(stats)), key=lambda i: stats[i]["kurtosis"])
    pick = st.selectbox(t("minilm.nf4.hist_layer"), names, index=worst, key=f"{key}.hist_layer")
    s = stats[names.index(pick)]
    hist = go.Figure()
    hist.add_bar(x=s["centers"], y=s["density"], name=t("minilm.nf4.weights"), marker_color="#bbb")
    hist.add_scatter(x=s["centers"], y=s["gauss_density"], name="N(0, 1)", line=dict(color="#ef553b"))
    hist.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10), bargap=0,
                       title=t("minilm.nf4.hist_title", layer=pick, k=s["kurtosis"], m=s["absmax_sigmas"]),
                       xaxis_title="(w − μ) / σ", yaxis=dict(type="log", title=t("minilm.nf4.density")))
    st.plotly_chart(hist, key=f"{key}.hist")
    st.caption(t("minilm.nf4.tail", tail=100 * s["tail_3sigma"], gauss=100 * s["gauss_tail_3sigma"]))


def render_nf4(res: dict, key: str) -> None:
    model_caption(res)
    st.caption(t("minilm.nf4.header", n=res["n_layers_quantized"], params=res["quantized_params"],
                 layers=res["layers"], bs=res["blocksize"], dq=res["double_quant"], pairs=res["n_pairs"],
                 device=res["device"], seconds=res["seconds"]))
    base = res["baseline"]
    rows = [{t("minilm.col.format"): "fp32", t("minilm.col.bits"): 32.0, t("minilm.col.rel"): "0.00%",
             t("minilm.col.cos_mean"): "1.0000", t("minilm.col.cos_min"): "1.0000",
             t("minilm.col.acc"): f"{base['accuracy']:.3f}", t("minilm.col.acc_hard"): f"{base['accuracy_hard']:.3f}",
             t("minilm.col.pair_win"): f"{base['pair_win']:.3f}"}]
    for fmt, f in res["formats"].items():
        rows.append({t("minilm.col.format"): fmt.upper(), t("minilm.col.bits"): round(f["bits_per_param"], 4),
                     t("minilm.col.rel"): f"{100 * f['rel_err']:.2f}%", t("minilm.col.cos_mean"): f"{f['cos_mean']:.4f}",
                     t("minilm.col.cos_min"): f"{f['cos_min']:.4f}", t("minilm.col.acc"): f"{f['accuracy']:.3f}",
                     t("minilm.col.acc_hard"): f"{f['accuracy_hard']:.3f}", t("minilm.col.pair_win"): f"{f['pair_win']:.3f}"})
    st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)
    _kurtosis(res, key)
    fig = go.Figure()
    for fmt, f in res["formats"].items():
        fig.add_bar(x=[l["short"] for l in f["layers"]], y=[100 * l["rel_err"] for l in f["layers"]],
                    name=fmt.upper(), marker_color=COLORS[fmt])
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), barmode="group", title=t("minilm.nf4.layers"),
                      yaxis_title="‖W − Ŵ‖_F / ‖W‖_F (%)", legend=dict(orientation="h", y=-0.35))
    st.plotly_chart(fig, key=f"{key}.layers")
    d = res["double"]
    c = st.columns(3)
    c[0].metric(t("minilm.nf4.bits_plain"), f"{d['bits_plain']:.4f}")
    c[1].metric(t("minilm.nf4.bits_dq"), f"{d['bits_dq']:.4f}")
    c[2].metric(t("minilm.nf4.saved"), f"{d['saved_bytes'] / MiB:.3f} MiB")
    bnb = res.get("bnb", {})
    if bnb.get("available"):
        (st.success if bnb["all_equal"] else st.error)(
            t("minilm.nf4.bnb_ok" if bnb["all_equal"] else "minilm.nf4.bnb_bad", n=len(bnb["rows"]), version=bnb["version"]))
    else:
        st.info(t("minilm.nf4.bnb_missing", reason=bnb.get("reason", "?")))


# ── minilm-cls lab ───────────────────────────────────────────────────────────────────────────────────


def render_cls(run) -> None:
    res = run.result or {}
    if "variants" not in res:
        st.warning(t("minilm.cls.empty"))
        return
    model_caption(res)
    st.caption(t("minilm.cls.header", topics=", ".join(res["topics"]), train=res["n_train"], eval=res["n_eval"],
                 chance=100 * res["chance"]))
    rows = []
    for name, v in res["variants"].items():
        mem = v["memory"]
        rows.append({t("minilm.col.variant"): name, t("minilm.col.trainable"): f"{v['trainable_params']:,}",
                     t("minilm.col.acc_before"): f"{v['base']['eval_accuracy']:.3f}",
                     t("minilm.col.acc_after"): f"{v['final']['eval_accuracy']:.3f}",
                     t("minilm.col.s_step"): f"{v['seconds_per_step']:.3f}",
                     t("minilm.col.params_mib"): f"{mem['param_bytes'] / MiB:.1f}",
                     t("minilm.col.grad_mib"): f"{mem['grad_bytes'] / MiB:.2f}",
                     t("minilm.col.opt_mib"): f"{mem['optimizer_bytes'] / MiB:.2f}"})
    st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)
    fig = go.Figure()
    for cat in ("param_bytes", "grad_bytes", "optimizer_bytes"):
        fig.add_bar(x=list(res["variants"]), y=[v["memory"][cat] / MiB for v in res["variants"].values()],
                    name=t(f"minilm.mem.{cat}"))
    fig.update_layout(height=300, barmode="stack", margin=dict(l=10, r=10, t=40, b=10), title=t("minilm.cls.memory"),
                      yaxis_title="MiB")
    st.plotly_chart(fig, key=f"minilm-cls.{run.id}.mem")
    q = res["variants"].get("qlora", {}).get("base_bits")
    if q:
        st.caption(t("minilm.cls.qlora_bits", bits=q["bits_per_param"], weights=q["weights"]))
