"""Decision guide: a seven-question wizard -> labs.budget.decide.recommend -> method, reasons, numbers, links."""
from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
import streamlit as st
import yaml

from app import page_registry
from app.i18n import lang, pick
from labs.budget import CARD_SIZES_GB, BudgetError
from labs.budget.decide import DATA, N_TASKS, TASKS, recommend
from labs.budget.presets import MAIN_PRESETS
from labs.methods.registry import SPECS

CONTENT = Path(__file__).resolve().parents[2] / "content" / "budget"


@functools.lru_cache(maxsize=1)
def _guide() -> dict:
    return yaml.safe_load((CONTENT / "guide.yaml").read_text(encoding="utf-8"))


def g(*keys: str) -> str:
    node = _guide()
    for k in keys:
        node = node.get(k, {}) if isinstance(node, dict) else {}
    return pick(node, keys[-1])


st.title(g("title"))
st.markdown(g("intro"))

with st.form("wizard"):
    c1, c2 = st.columns(2)
    gpu_gb = c1.selectbox(g("q", "gpu"), CARD_SIZES_GB, index=0, key="dg_gpu")
    model = c2.selectbox(g("q", "model"), MAIN_PRESETS, index=0, key="dg_model")
    task = c1.selectbox(g("q", "task"), TASKS, format_func=lambda k: g("choices", "task", k))
    n_tasks = c2.selectbox(g("q", "n_tasks"), N_TASKS, format_func=lambda k: g("choices", "n_tasks", k))
    data = c1.selectbox(g("q", "data"), DATA, index=1, format_func=lambda k: g("choices", "data", k))
    latency = c2.checkbox(g("q", "latency"))
    quality = c2.checkbox(g("q", "quality"))
    st.form_submit_button("→")

try:
    rec = recommend(gpu_gb, model, task=task, n_tasks=n_tasks, latency=latency, data=data, best_quality=quality)
except BudgetError as e:
    st.error(f"{e.field}: {e}")
    st.stop()

est = rec["estimate"]
st.subheader(g("recommend"))
settings = ", ".join(f"{k}={v}" for k, v in rec["settings"].items()) if rec["method"] != "full" else ""
st.success(f"**{rec['method'].upper()}** {settings}")
st.markdown(f"**{g('reasons_title')}**")
st.markdown("\n".join(f"- {g('reason', k)}" for k in rec["reasons"]))

st.subheader(g("numbers"))
mb = est["memory_gb"]
c1, c2, c3 = st.columns(3)
c1.metric("GB / GPU", f"{mb['total']:.1f}", "fits" if rec["fits"] else "does not fit", delta_color="normal"
          if rec["fits"] else "inverse")
c2.metric("trainable", f"{est['trainable_params']:,}", f"{est['trainable_percent']:.3f}%")
c3.metric("adapter file", f"{est['adapter_file_bytes'] / 1e6:,.1f} MB")
st.caption("batch 1 · seq 512 · bf16-mixed · AdamW · full checkpointing — " + ", ".join(
    f"{m}: {v / 1e9:.1f} GB" for m, v in rec["alternatives"].items()))

st.subheader(g("labs"))
pages = dict.fromkeys(SPECS[m].page for m in [rec["method"], "lora", "qlora", "full"] if m in SPECS and SPECS[m].page)
st.markdown("\n".join(f"- 🔬 [{pick(page_registry.get(p).title)}](./{page_registry.get(p).url})" for p in pages))

st.subheader(g("scenarios_title"))
rows = [pick(r) for r in _guide()["scenarios"]]
st.table(pd.DataFrame(rows, columns=pick(_guide()["scenario_cols"])))
st.subheader(g("tips_title"))
st.markdown("\n".join(f"{i}. {tip}" for i, tip in enumerate(_guide()["tips"][lang()], 1)))

# ── The trade-off table, measured (issue 12): ours vs the calculator at 7B/13B/70B vs the notes' claims ──
from app.compare_view import compare_section  # noqa: E402

compare_section()
