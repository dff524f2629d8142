"""Concept page: AdaLoRA. Text from content/pages/adalora/; the budget schedule you shape is the one the lab runs."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch
from plotly.subplots import make_subplots

from app import labview
from app.concept import Concept, base_model, render
from app.i18n import pick, t
from app.ui import concept_section, topic_cards
from labs.experiments import get_lab
from labs.experiments.adalora import MODULE_ORDER, TARGETS, check, schedule
from labs.methods.inject import layer_index, module_type, preset
from labs.params import ParamError

PAGE, LAB_ID = "adalora", "adalora"
SCHEDULE_FIELDS = ("steps", "init_r", "target_r", "tinit", "tfinal", "deltaT", "target_modules")
TOY_MATRICES = 6


@st.cache_resource(show_spinner=False)
def target_counts() -> dict[str, int]:
    """How many matrices each target_modules choice adapts in the bundled model (tiny Llama if absent)."""
    from labs.methods import inject

    model, _ = base_model()
    return {k: len(inject.match_targets(model, preset(k))) for k in TARGETS}


def schedule_controls() -> dict | None:
    """The schedule's widgets (defaults = the lab's --quick values); validated values or None with st.error."""
    lab = get_lab(LAB_ID)
    spec = {p.name: p for p in lab.params}
    start = {**{p.name: p.default for p in lab.params}, **lab.quick}
    cols = st.columns(4)
    raw = {"steps": cols[0].number_input("steps (T)", value=int(start["steps"]), step=1, key="ada.steps"),
           "init_r": cols[1].number_input("init_r", value=int(start["init_r"]), step=1, key="ada.init_r"),
           "target_r": cols[2].number_input("target_r", value=int(start["target_r"]), step=1, key="ada.target_r"),
           "target_modules": cols[3].selectbox("target_modules", list(TARGETS),
                                               index=list(TARGETS).index(start["target_modules"]),
                                               key="ada.target_modules"),
           "tinit": cols[0].number_input("tinit", value=int(start["tinit"]), step=1, key="ada.tinit"),
           "tfinal": cols[1].number_input("tfinal", value=int(start["tfinal"]), step=1, key="ada.tfinal"),
           "deltaT": cols[2].number_input("deltaT", value=int(start["deltaT"]), step=1, key="ada.deltaT")}
    try:
        values = {k: spec[k].check(v) for k, v in raw.items()}
        check({**start, **values})
    except ParamError as err:
        st.error(t("lab.bad_param", field=err.field, message=str(err)))
        return None
    return values


def picture(values: dict | None) -> None:
    if values is None:
        return
    n = target_counts()[values["target_modules"]]
    sched = schedule(values["steps"], values["init_r"], values["target_r"], n, values["tinit"],
                     values["tfinal"], values["deltaT"])
    fig = go.Figure()
    fig.add_scatter(x=[s["step"] for s in sched], y=[s["budget"] for s in sched], mode="lines", name="b(t)",
                    line=dict(shape="hv"))
    upd = [s for s in sched if s["update"]]
    fig.add_scatter(x=[s["step"] for s in upd], y=[s["budget"] for s in upd], mode="markers",
                    name=t("ada.pic.updates"))
    for x, label in ((values["tinit"], "tinit"), (values["steps"] - values["tfinal"], "T − tfinal")):
        fig.add_vline(x=x, line_dash="dot", annotation_text=label)
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=t("lab.step"),
                      yaxis_title=t("ada.pic.budget"), legend=dict(orientation="h", y=-0.25))
    st.plotly_chart(fig, key="ada.pic.schedule")
    st.caption(t("ada.pic.caption", n=n, b0=values["init_r"] * n, bT=values["target_r"] * n,
                 updates=len(upd)))
    toy_panel(values, sched)
    concept_section(PAGE, "picture", header=False)


def toy_panel(values: dict, sched: list[dict]) -> None:
    """Global top-b(t) on made-up scores: 6 toy matrices whose importance differs by matrix."""
    r0, steps = values["init_r"], values["steps"]
    # the key carries T: a new range starts a new slider instead of clashing with a value beyond it
    step = st.slider(t("ada.pic.toy_step"), 1, steps, min(steps, values["tinit"] + 1), key=f"ada.toy.step.{steps}")
    toy = schedule(steps, r0, values["target_r"], TOY_MATRICES, values["tinit"], values["tfinal"], values["deltaT"])
    budget = toy[step - 1]["budget"]
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(TOY_MATRICES, r0, generator=g) * torch.linspace(0.2, 1.0, TOY_MATRICES).view(-1, 1)
    order = scores.flatten().argsort(descending=True)
    keep = torch.zeros(TOY_MATRICES * r0, dtype=torch.bool)
    keep[order[:budget]] = True
    keep = keep.view(TOY_MATRICES, r0)
    fig = go.Figure(go.Heatmap(z=(scores * keep).tolist(), x=[f"λ{i + 1}" for i in range(r0)],
                               y=[f"{t('ada.pic.toy_matrix')} {k + 1}" for k in range(TOY_MATRICES)],
                               colorscale="Blues", colorbar=dict(title=t("ada.pic.score"))))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10),
                      title=t("ada.pic.toy_title", step=step, budget=budget, total=TOY_MATRICES * r0))
    st.plotly_chart(fig, key="ada.pic.toy")
    st.caption(t("ada.pic.toy_ranks", ranks=", ".join(str(int(k)) for k in keep.sum(1))))


def render_result(run) -> None:
    res = run.result or {}
    a = res.get("adalora")
    if not a:
        st.info(t("ada.res.empty"))
        return
    lora = res.get("lora")
    rows = [{t("ada.res.method"): "AdaLoRA", t("ada.res.acc"): a["final"]["eval_accuracy"],
             t("ada.res.loss"): a["final"]["eval_loss"], t("ada.res.train_params"): a["trainable_params"],
             t("ada.res.final_params"): a["final_budget_params"], t("ada.res.s_step"): a["seconds_per_step"]}]
    if lora:
        rows.append({t("ada.res.method"): f"LoRA r={lora['r']}", t("ada.res.acc"): lora["final"]["eval_accuracy"],
                     t("ada.res.loss"): lora["final"]["eval_loss"], t("ada.res.train_params"): lora["trainable_params"],
                     t("ada.res.final_params"): lora["trainable_params"], t("ada.res.s_step"): lora["seconds_per_step"]})
    st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)
    steps = a["history_steps"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=(t("ada.res.budget_title"), t("ada.res.orth_title")))
    fig.add_scatter(x=steps, y=a["budget"], name="b(t)", line=dict(shape="hv"), row=1, col=1)
    fig.add_scatter(x=steps, y=a["kept"], name=t("ada.res.kept"), mode="markers", marker=dict(size=4), row=1, col=1)
    fig.add_scatter(x=list(range(1, len(a["orth"]) + 1)), y=a["orth"], name="R(P, Q)", row=1, col=2)
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    st.plotly_chart(fig, key=f"ada.res.curves.{run.id}")
    heatmap(a, run.id)
    alloc = a["allocation"]
    c1, c2 = st.columns(2)
    types = [k for k in MODULE_ORDER if k in alloc["by_type"]] + sorted(set(alloc["by_type"]) - set(MODULE_ORDER))
    c1.plotly_chart(go.Figure(go.Bar(x=types, y=[alloc["by_type"][k] for k in types])).update_layout(
        height=280, title=t("ada.res.by_type"), margin=dict(l=10, r=10, t=40, b=10)), key=f"ada.type.{run.id}")
    layers = list(alloc["by_layer"])
    c2.plotly_chart(go.Figure(go.Bar(x=layers, y=[alloc["by_layer"][k] for k in layers])).update_layout(
        height=280, title=t("ada.res.by_layer"), margin=dict(l=10, r=10, t=40, b=10)), key=f"ada.layer.{run.id}")


def heatmap(a: dict, run_id: int) -> None:
    """Rank per layer × module type at the step chosen with the slider."""
    modules, steps = a["modules"], a["history_steps"]
    idx = st.slider(t("ada.res.scrub"), 1, len(steps), len(steps), key=f"ada.scrub.{run_id}") - 1
    types = [k for k in MODULE_ORDER if any(module_type(m) == k for m in modules)]
    layers = sorted({layer_index(m) for m in modules})
    grid = [[None] * len(types) for _ in layers]
    for m, r in zip(modules, a["ranks"][idx]):
        if module_type(m) in types:
            grid[layers.index(layer_index(m))][types.index(module_type(m))] = r
    fig = go.Figure(go.Heatmap(z=grid, x=types, y=[f"layer {i}" for i in layers], zmin=0,
                               zmax=max(max(row) for row in a["ranks"]), colorscale="Viridis", text=grid,
                               texttemplate="%{text}"))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10),
                      title=t("ada.res.heat_title", step=steps[idx], budget=a["budget"][idx], kept=a["kept"][idx]))
    st.plotly_chart(fig, key=f"ada.heat.{run_id}.{idx}")


def schedule_picture() -> None:
    """The schedule widgets, then its picture; the lab below runs exactly this schedule."""
    SHAPED["values"] = schedule_controls()
    picture(SHAPED["values"])


def lab() -> None:
    """The lab panel with the schedule fields fixed to the picture's (the lab's --quick values if those are invalid)."""
    schedule_values = SHAPED.get("values")
    spec = get_lab(LAB_ID)
    st.caption(pick(spec.summary))
    st.caption(t("ada.lab.fixed"))
    fallback = {k: {**{p.name: p.default for p in spec.params}, **spec.quick}[k] for k in SCHEDULE_FIELDS}
    form = labview.params_form(LAB_ID, fixed=schedule_values or fallback)
    if form is not None and schedule_values is not None:
        try:
            check(form)
        except ParamError as err:
            st.error(t("lab.bad_param", field=err.field, message=str(err)))
            form = None
    labview.start_button(LAB_ID, form if schedule_values is not None else None)
    labview.live(LAB_ID, render_result)
    with st.expander(t("lab.history")):
        labview.history(LAB_ID)


SHAPED: dict = {}      # this rerun's schedule, shared by the picture and the lab
render(Concept(PAGE, schedule_picture, layout="own", labs=[lab], cards=lambda: topic_cards("adalora", "ada.cards")))
