"""The measured trade-off table on the decision-guide page: ours, the calculator at 7B/13B/70B, the notes' claims.

    compare_section()        the whole block: saved last run (instant), disagreements explained, re-run panel
    render_tables(result)    the three tables and the disagreement list for one comparison result
    render_result(run)       the lab panel's renderer for a finished `compare` run
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.i18n import pick, t
from labs.compare import SCALE_MODELS, load_saved
from labs.compare_claims import COLUMNS, claims, disagreements, judge

MARK = {"agrees": "✓", "higher": "▲", "lower": "▼", None: ""}
MEMORY_PARTS = ("weights", "quant_constants", "gradients", "optimizer", "activations")


def _mib(n: float) -> str:
    return f"{n / 2**20:.2f}"


def _cell(text: str, verdict: str | None) -> str:
    return f"{text} {MARK.get(verdict, '')}".strip()


def measured_table(result: dict) -> pd.DataFrame:
    verdicts = judge(result)
    rows = []
    for r in result["rows"]:
        v = verdicts[r["method"]]
        lines = r["code_lines"]["method"] + r["code_lines"]["kernels"]
        rows.append({
            t("cmp.col.method"): r["label"], t("cmp.col.lr"): f"{r['lr']:g}",
            t("cmp.col.trainable"): _cell(f"{r['trainable_params']:,} ({r['trainable_percent']:.3f}%)", v["trainable"]),
            t("cmp.col.memory_mib"): _mib(r["memory"]["total"]),
            t("cmp.col.saving"): _cell(f"{100 * r['memory_saving_vs_full']:.1f}%", v["memory"]),
            t("cmp.col.s_step"): f"{r['seconds_per_step']:.3f} / {r['cpu_seconds_per_step']:.3f}",
            t("cmp.col.ms_token"): _cell(f"{r['latency']['ms_per_token']:.2f} "
                                         f"({100 * r['latency']['overhead_vs_base']:+.0f}%)"
                                         + (" ⊕" if r["mergeable"] and r["method"] != "full" else ""), v["inference"]),
            t("cmp.col.accuracy"): _cell(f"{r['accuracy']:.3f} ({100 * (r['accuracy_vs_full'] or 0):.0f}%)",
                                         v["quality"]),
            t("cmp.col.lines"): _cell(f"{lines} ({r['code_lines']['method']} + {r['code_lines']['kernels']})",
                                      v["complexity"]),
        })
    return pd.DataFrame(rows)


def scale_table(result: dict) -> pd.DataFrame:
    rows = []
    labels = {r["method"]: r["label"] for r in result["rows"]}
    for method, label in labels.items():
        row = {t("cmp.col.method"): label}
        for model in SCALE_MODELS:
            s = result["scale"][model][method]
            short = model.replace("llama-2-", "").upper()
            row[f"{short} %"] = f"{s['trainable_percent']:.3g}%"
            row[f"{short} GB"] = f"{s['memory_gb']['total']:.1f}"
            row[f"{short} {t('cmp.col.saving')}"] = f"{100 * s['memory_saving_vs_full']:.0f}%"
        rows.append(row)
    return pd.DataFrame(rows)


def claims_table(result: dict) -> pd.DataFrame:
    data = claims()["methods"]
    rows = []
    for r in result["rows"]:
        c = data.get(r["method"], {})
        rows.append({t("cmp.col.method"): r["label"], t("cmp.col.trainable"): pick(c.get("trainable_text")),
                     t("cmp.col.saving"): pick(c.get("memory_text")), t("cmp.col.inference"): pick(c.get("inference_text")),
                     t("cmp.col.quality"): pick(c.get("quality_text")),
                     t("cmp.col.complexity"): "★" * (c.get("complexity") or 0) + "☆" * (3 - (c.get("complexity") or 3)),
                     t("cmp.col.note"): pick(c.get("note"))})
    return pd.DataFrame(rows)


def memory_chart(result: dict) -> go.Figure:
    fig = go.Figure()
    labels = [r["label"] for r in result["rows"]]
    for part in MEMORY_PARTS:
        fig.add_bar(name=t(f"cmp.mem.{part}"), x=labels, y=[r["memory"][part] / 2**20 for r in result["rows"]])
    fig.update_layout(barmode="stack", height=340, margin=dict(l=10, r=10, t=30, b=10),
                      yaxis_title="MiB", legend=dict(orientation="h", y=-0.3))
    return fig


def render_tables(result: dict, key: str = "saved") -> None:
    cfg = result["config"]
    v = result.get("versions", {})
    st.caption(t("cmp.provenance", date=result["date"], device=result.get("device_name", result["device"]),
                 task=result["task"], steps=cfg["steps"], batch=cfg["batch_size"], seed=cfg["seed"],
                 versions=", ".join(f"{k} {x}" for k, x in v.items() if x),
                 seconds=f"{result['seconds']:.0f}", cpu=f"{result['cpu_seconds']:.0f}"))
    st.markdown(f"**{t('cmp.ours')}**")
    st.dataframe(measured_table(result), hide_index=True, use_container_width=True)
    st.caption(t("cmp.legend", examples=result.get("eval_examples", "?"),
                 base=f"{result['base_latency']['ms_per_token']:.2f}"))
    st.plotly_chart(memory_chart(result), key=f"cmp-mem-{key}")
    st.markdown(f"**{t('cmp.scale')}**")
    st.dataframe(scale_table(result), hide_index=True, use_container_width=True)
    st.caption(t("cmp.scale_note"))
    st.markdown(f"**{t('cmp.claims')}**")
    st.dataframe(claims_table(result), hide_index=True, use_container_width=True)
    st.caption(pick(claims()["source"]))
    st.markdown(f"**{t('cmp.disagreements')}**")
    found = disagreements(result)
    if not found:
        st.success(t("cmp.all_agree"))
    labels = {r["method"]: r["label"] for r in result["rows"]}
    for col in COLUMNS:
        cells = [d for d in found if d["column"] == col]
        if not cells:
            continue
        names = ", ".join(f"{labels[d['method']]} {MARK[d['verdict']]}" for d in cells)
        with st.expander(f"{t('cmp.col.' + col)}: {names}"):
            shown = set()
            for d in cells:
                text = pick(d["explanation"])
                if text and text not in shown:
                    shown.add(text)
                    st.markdown(text)


def render_result(run) -> None:
    """Lab-panel renderer: the same tables for a run that just finished on this page."""
    result = run.result or {}
    if "rows" not in result:
        st.error(t("cmp.no_rows"))
        return
    render_tables(result, key=f"run{run.id}")


def compare_section() -> None:
    from app.labview import lab_panel

    st.divider()
    st.header(t("cmp.title"))
    st.markdown(t("cmp.intro"))
    saved = load_saved("facts")
    if saved is None:
        st.info(t("cmp.no_saved"))
    else:
        render_tables(saved)
    st.subheader(t("cmp.rerun"))
    lab_panel("compare", render_result=render_result)
