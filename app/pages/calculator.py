"""VRAM & speed calculator: sidebar inputs -> labs.budget.estimate -> stacked bar, fits table, charts, trace."""
from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import yaml

from app.calc_link import parse as parse_link
from app.i18n import lang, pick, t
from labs.budget import CARD_SIZES_GB, GPUS, METHODS, OPTIMIZERS, PRECISIONS, BudgetError, estimate, seed_table
from labs.budget.activations import korthikanti_total
from labs.budget.methods import LORA_LIKE, VECTOR_METHODS
from labs.budget.params import LINEAR_NAMES
from labs.budget.presets import MAIN_PRESETS, MAX_CONFIG_BYTES, PRESETS, get_arch, parse_config_bytes

CONTENT = Path(__file__).resolve().parents[2] / "content" / "budget"
CATS = ("weights", "quant_constants", "gradients", "optimizer", "activations", "logits", "overhead")
COLORS = ("#4c78a8", "#9ecae9", "#f58518", "#e45756", "#54a24b", "#b279a2", "#bab0ac")


@functools.lru_cache(maxsize=1)
def _strings() -> dict:
    return yaml.safe_load((CONTENT / "strings.yaml").read_text(encoding="utf-8"))


def s(key: str) -> str:
    return pick(_strings().get(key), key)


def formula(cat: str, r: dict) -> str:
    """The formula behind one bar segment, with this estimate's numbers."""
    bpe, P, T = r["bytes_per_element"], r["total_params"], r["trainable_params"]
    frozen = 0 if r["method"] == "full" else P
    return {
        "weights": f"frozen {frozen:,} x {bpe['frozen']} B (QLoRA: decoder linears x 0.5 B) + trainable {T:,} x "
                   f"{bpe['weight']} B" + (" / N (ZeRO-3)" if r["zero"] >= 3 else ""),
        "quant_constants": "NF4 absmax per block: 4 B/block, or (double quant) 1 B/block + 4 B per 256 blocks",
        "gradients": f"trainable {T:,} x {bpe['grad']} B" + (" / N (ZeRO-2+)" if r["zero"] >= 2 else ""),
        "optimizer": f"trainable x ({bpe['master']} B master + {r['optimizer']} states)"
                     + (" / N (ZeRO-1+)" if r["zero"] >= 1 else ""),
        "activations": "; ".join(f"{k}: {v / 1e9:.3f} GB" for k, v in r["activation_terms"].items()),
        "logits": f"b*s*V x ({bpe['compute']} B logits + 3 x 4 B fp32 log-softmax, its grad, grad in)",
        "overhead": "500 MiB CUDA context + 5% allocator fragmentation (assumption)",
    }[cat]


def bar(results: dict[str, dict], title: str) -> go.Figure:
    fig = go.Figure()
    names = list(results)
    for cat, color in zip(CATS, COLORS):
        vals = [results[n]["memory_bytes"][cat] / 1e9 for n in names]
        hover = [formula(cat, results[n]) for n in names]
        fig.add_trace(go.Bar(name=s(f"cat.{cat}"), x=names, y=vals, marker_color=color, customdata=hover,
                             hovertemplate="%{y:.2f} GB<br>%{customdata}<extra>" + s(f"cat.{cat}") + "</extra>"))
    for gb in CARD_SIZES_GB:
        fig.add_hline(y=gb, line_dash="dot", line_color="#888", annotation_text=f"{gb} GB",
                      annotation_position="right")
    fig.update_layout(barmode="stack", title=title, yaxis_title="GB per GPU", height=430,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h"))
    return fig


def sidebar() -> dict:
    pre, bad = parse_link(st.query_params)   # ?model=…&method=… from a link (e.g. the notes errata), validated
    for msg in bad:
        st.warning(t("errata.calc_link_bad", message=msg))

    def ix(options, name, default):   # the selectbox index of the linked value, else of the default
        return list(options).index(pre.get(name, default))

    with st.sidebar:
        st.header(s("calc.inputs"))
        model = st.selectbox(s("calc.model"), list(PRESETS), index=ix(PRESETS, "model", "llama-2-7b"),
                             key="calc_model")
        up = st.file_uploader(s("calc.upload"), type=["json"])
        if up is not None:
            data = up.getvalue()
            try:
                model = parse_config_bytes(data, name=Path(up.name).stem)
            except BudgetError as e:
                st.error(f"{s('calc.upload_error')}: {e}")
        method = st.selectbox(s("calc.method"), METHODS, index=ix(METHODS, "method", METHODS[1]), key="calc_method")
        kw = {"method": method, "model": model}
        if method in LORA_LIKE:
            kw["rank"] = int(st.number_input(s("calc.rank"), min_value=1, max_value=4096, value=pre.get("rank", 16),
                                             key="calc_rank"))
            linked = pre.get("targets", "all-linear")
            tg = st.multiselect(s("calc.targets"), LINEAR_NAMES, default=[n for n in LINEAR_NAMES if linked == "all-linear"
                                                                         or n in linked.split(",")])
            kw["targets"] = "all-linear" if set(tg) == set(LINEAR_NAMES) else ",".join(tg)
        if method in VECTOR_METHODS:
            if method == "vera":
                kw["rank"] = int(st.number_input(s("calc.vera_rank"), min_value=1, max_value=65536,
                                                 value=pre.get("rank", 256), key="calc_vera_rank"))
            tg = st.multiselect(s("calc.targets"), LINEAR_NAMES, key=f"calc_{method}_targets",
                                default=["k_proj", "v_proj", "down_proj"] if method == "ia3" else ["q_proj", "v_proj"])
            kw["targets"] = ",".join(tg)
            if method == "ia3":
                ff = st.multiselect(s("calc.ia3_ff"), tg, default=[n for n in tg if n == "down_proj"], key="calc_ia3_ff")
                kw["feedforward"] = ",".join(ff)
        if method in ("prompt", "prefix"):
            kw["n_tokens"] = int(st.number_input("n_virtual_tokens", min_value=1, max_value=4096,
                                                 value=pre.get("n_tokens", 20)))
        if method == "houlsby":
            kw["adapter_size"] = int(st.number_input("adapter bottleneck m", min_value=1, max_value=4096,
                                                   value=pre.get("adapter_size", 64)))
        kw["precision"] = st.selectbox(s("calc.precision"), PRECISIONS, index=ix(PRECISIONS, "precision", "bf16-mixed"))
        kw["optimizer"] = st.selectbox(s("calc.optimizer"), OPTIMIZERS, index=ix(OPTIMIZERS, "optimizer", "adamw"))
        kw["checkpointing"] = st.selectbox(s("calc.ckpt"), ("full", "none"),
                                           index=ix(("full", "none"), "checkpointing", "full"))
        kw["flash"] = st.toggle(s("calc.flash"), value=pre.get("flash", True))
        kw["batch"] = int(st.number_input(s("calc.batch"), min_value=1, max_value=4096, value=pre.get("batch", 1)))
        kw["seq"] = int(st.number_input(s("calc.seq"), min_value=1, max_value=1 << 20, value=pre.get("seq", 512),
                                          step=256, key="calc_seq"))
        kw["gpus"] = int(st.number_input(s("calc.gpus"), min_value=1, max_value=4096, value=pre.get("gpus", 1)))
        kw["zero"] = st.selectbox(s("calc.zero"), (0, 1, 2, 3), index=pre.get("zero", 0))
        kw["offload"] = st.checkbox(s("calc.offload"), value=pre.get("offload", False))
        if method == "qlora":
            kw["nf4_blocksize"] = st.selectbox(s("calc.blocksize"), (32, 64, 128, 256),
                                               index=ix((32, 64, 128, 256), "nf4_blocksize", 64))
            kw["double_quant"] = st.checkbox(s("calc.dq"), value=pre.get("double_quant", True))
        kw["mode"] = st.selectbox(s("calc.mode"), ("train", "inference"),
                                  index=ix(("train", "inference"), "mode", "train"))
        kw["gpu"] = st.selectbox(s("calc.gpu"), list(GPUS), index=ix(GPUS, "gpu", "A100-80GB"))
        kw["mfu"] = st.slider(s("calc.mfu"), 0.05, 0.8, float(pre.get("mfu", 0.4)), 0.05)
    return kw


st.title(s("calc.title"))
st.markdown(s("calc.intro"))
kw = sidebar()
try:
    r = estimate(**kw)
except BudgetError as e:
    st.error(f"{e.field}: {e}")
    st.stop()

m, gb = r["memory_bytes"], r["memory_gb"]
c1, c2, c3, c4 = st.columns(4)
c1.metric(s("calc.total_params"), f"{r['total_params'] / 1e9:.3f} B")
c2.metric(s("calc.trainable"), f"{r['trainable_params']:,}", f"{r['trainable_percent']:.3f}%")
c3.metric(s("calc.per_gpu"), f"{gb['total']:.2f} GB")
c4.metric(s("calc.step_time"), f"{r['speed']['seconds_per_step']:.3f} s")
st.caption(f"{r['trainable_formula']} · {s('calc.adapter_file')}: {r['adapter_file_bytes'] / 1e6:,.1f} MB · "
           f"{r['speed']['train_flops_per_token'] / 1e9:.1f} GFLOP/token")
if r["gpus"] > 1:   # multi-GPU figures: communication per step, and where they are checked against real ranks
    comm = r["comm_bytes_per_step"]
    st.caption(t("scaling.calc_multi_gpu", total=f"{comm['total'] / 1e9:.2f}", wire=f"{comm['wire_per_gpu'] / 1e9:.2f}",
                 formula=comm["formula"]))

left, right = st.columns([3, 2])
with left:
    st.subheader(s("calc.breakdown"))
    st.plotly_chart(bar({r["model"]: r}, f"{r['model']} · {r['method']}"), use_container_width=True)
with right:
    st.subheader(s("calc.fits"))
    st.dataframe(pd.DataFrame({"GB": list(CARD_SIZES_GB), "✓": ["✅" if r["fits"][str(g)] else "❌"
                                                               for g in CARD_SIZES_GB]}), hide_index=True)
    st.dataframe(pd.DataFrame({"GB": {k: round(v, 3) for k, v in gb.items()}}))

st.subheader(s("calc.compare"))
base = {k: v for k, v in kw.items() if k not in ("method", "rank", "targets", "n_tokens", "adapter_size",
                                                 "nf4_blocksize", "double_quant", "feedforward")}
side = {}
for meth in METHODS:
    try:
        side[meth] = estimate(**base, method=meth)
    except BudgetError:
        continue
st.plotly_chart(bar(side, str(r["model"])), use_container_width=True)

st.subheader(s("calc.vs_seq"))
seqs = [256, 512, 1024, 2048, 4096, 8192, 16384, 32768]
fig = go.Figure()
for meth in ("full", "lora", "qlora"):
    ys = [estimate(**{**base, "seq": q}, method=meth)["memory_bytes"]["total"] / 1e9 for q in seqs]
    fig.add_trace(go.Scatter(x=seqs, y=ys, mode="lines+markers", name=meth))
fig.update_layout(xaxis_type="log", xaxis_title="sequence length", yaxis_title="GB per GPU", height=360,
                  margin=dict(l=10, r=10, t=10, b=10))
st.plotly_chart(fig, use_container_width=True)

with st.expander(s("calc.seed")):
    st.markdown(s("calc.seed_text"))
    st.dataframe(pd.DataFrame(seed_table()).round(1).rename(columns={"seed_8_bytes_gb": t("errata.notes_8_bytes")}),
                 hide_index=True)

with st.expander(s("calc.assumptions")):
    st.markdown("\n".join(f"- {a}" for a in r["assumptions"]))
    st.markdown(f"**{s('calc.act_terms')}** — peak at: {r['activation_peak_phase']}")
    st.json(r["activation_terms"])
    st.markdown("**per layer (bytes)**")
    st.json(r["activation_per_layer"])

if st.button(s("calc.trace_btn")):
    from labs.budget.trace import TRACEABLE
    if kw["method"] not in TRACEABLE or kw.get("mode") == "inference":
        st.info(s("calc.trace_unsupported"))
    else:
        with st.spinner(s("calc.trace_running")):
            try:
                tr = estimate(**kw, trace=True)["trace"]
            except BudgetError as e:
                st.error(f"{e.field}: {e}")
                st.stop()
        rows = {"model states": (m["weights"] + m["quant_constants"] + m["gradients"] + m["optimizer"],
                                 tr["model_states"]),
                "activations + logits": (m["activations"] + m["logits"], tr["activations_peak"])}
        for k in ("weights", "quant_constants", "gradients", "optimizer"):
            rows[k] = (m[k], tr[k])
        if tr.get("activations_per_layer") is not None:   # one more layer's saved set, both ways
            rows[s("calc.per_layer")] = (r["activation_kept_per_layer"], tr["activations_per_layer"])
        st.dataframe(pd.DataFrame({s("calc.formula") + " GB": {k: v[0] / 1e9 for k, v in rows.items()},
                                   s("calc.traced") + " GB": {k: v[1] / 1e9 for k, v in rows.items()}}).round(4))
        st.caption(f"{tr['note']} · {tr['seconds']} s")
        closed = {k: korthikanti_total(get_arch(kw["model"]), kw["batch"], kw["seq"], recompute=k) / 1e9
                  for k in (False, True)}
        st.caption(s("calc.korthikanti").format(closed=closed[False], recomp=closed[True]))
        if "grad_in_flight" in tr:
            st.caption(f"full FT: the traced activation peak includes one weight gradient being written "
                       f"({tr['grad_in_flight'] / 1e9:.3f} GB), which MemTracker labels Temp until it is "
                       "accumulated; the formula counts it under gradients.")
