"""The lab panel every concept page embeds: parameters → queue → live progress → result → history.

The page thread only reads and writes the jobs database (labs.jobs); the lab itself runs in a
worker process. ``?run=<id>`` in the URL and the latest active run of the lab let a reload or a
second tab re-attach to a running job.
"""
from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path
from typing import Callable

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app.i18n import pick, t
from labs import jobs
from labs.experiments import get_lab
from labs.params import Param, ParamError

POLL_SECONDS = 1.0


def _widget(p: Param, key: str, value):
    label = f"{p.name} — {p.help}" if p.help else p.name
    if p.kind == "choice":
        opts = list(p.choices)
        return st.selectbox(label, opts, index=opts.index(value) if value in opts else 0, key=key)
    if p.kind == "bool":
        return st.checkbox(label, value=bool(value), key=key)
    if p.kind == "int":
        return st.number_input(label, value=int(value), step=1, key=key,
                               help=t("lab.allowed", allowed=p.allowed()))
    if p.kind == "float":
        return st.number_input(label, value=float(value), format="%g", key=key,
                               help=t("lab.allowed", allowed=p.allowed()))
    return st.text_input(label, value=str(value), key=key)


def linked_params(lab_id: str) -> dict:
    """``?lab=<id>&<param>=<value>…`` from a link (e.g. the notes errata): each value checked by its Param;
    a bad one is ignored with a warning that names it."""
    if st.query_params.get("lab") != lab_id:
        return {}
    out = {}
    for p in get_lab(lab_id).params:
        if p.name in st.query_params:
            try:
                out[p.name] = p.check(st.query_params[p.name])
            except ParamError as err:
                st.warning(t("errata.lab_link_bad", message=str(err)))
    return out


def params_form(lab_id: str, only: list[str] | None = None, fixed: dict | None = None) -> dict | None:
    """Widgets for the lab's parameters (its --quick defaults, or a link's values); returns validated values or None."""
    lab = get_lab(lab_id)
    shown = [p for p in lab.params if (only is None or p.name in only) and p.name not in (fixed or {})]
    defaults = {**{p.name: p.default for p in lab.params}, **lab.quick, **linked_params(lab_id)}
    raw = dict(fixed or {})
    cols = st.columns(min(3, max(1, len(shown))))
    for i, p in enumerate(shown):
        with cols[i % len(cols)]:
            raw[p.name] = _widget(p, f"{lab_id}.{p.name}", defaults[p.name])
    try:
        return lab.validate(raw, quick=True)
    except ParamError as err:
        st.error(t("lab.bad_param", field=err.field, message=str(err)))
        return None


def _current_run(lab_id: str) -> int | None:
    key = f"run.{lab_id}"
    if key not in st.session_state:
        q = st.query_params.get("run")
        rid = int(q) if q and q.isdigit() else None
        run = jobs.get_run(rid) if rid else None
        if run is None or run.lab != lab_id:
            active = jobs.list_runs(lab_id, limit=1, statuses=("queued", "running"))
            run = active[0] if active else None
        st.session_state[key] = run.id if run else None
    return st.session_state[key]


def start_button(lab_id: str, values: dict | None, label_key: str = "lab.start") -> None:
    if st.button(t(label_key), type="primary", disabled=values is None, key=f"start.{lab_id}"):
        try:
            rid = jobs.submit(lab_id, values, quick=True)
        except (ParamError, KeyError, ValueError) as err:
            st.error(t("lab.bad_param", field=getattr(err, "field", "lab"), message=str(err)))
            return
        st.session_state[f"run.{lab_id}"] = rid
        st.query_params["run"] = str(rid)
        st.rerun()


def curves(run_ids: list[int], names: dict[int, str] | None = None) -> go.Figure:
    """Loss (left) and eval accuracy (right axis) for one or several runs, from their events."""
    fig = go.Figure()
    for rid in run_ids:
        name = (names or {}).get(rid, f"#{rid}" if len(run_ids) > 1 else "")
        evs = jobs.events(rid, types=("step", "eval"))
        # a lab that trains several variants tags their events with "series"
        for series in dict.fromkeys(e.get("series", "") for e in evs):
            tag = " ".join(x for x in (name, series) if x)
            steps = [e for e in evs if e["type"] == "step" and e.get("series", "") == series and "loss" in e]
            evals = [e for e in evs if e["type"] == "eval" and e.get("series", "") == series
                     and "eval_accuracy" in e]
            if steps:
                fig.add_scatter(x=[e["step"] for e in steps], y=[e["loss"] for e in steps],
                                name=f"{tag} {t('lab.loss')}".strip(), mode="lines")
            if evals:
                fig.add_scatter(x=[e["step"] for e in evals], y=[e["eval_accuracy"] for e in evals],
                                name=f"{tag} {t('lab.accuracy')}".strip(), mode="lines+markers", yaxis="y2")
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=t("lab.step"),
                      yaxis=dict(title=t("lab.loss")),
                      yaxis2=dict(title=t("lab.accuracy"), overlaying="y", side="right", range=[0, 1.02]),
                      legend=dict(orientation="h", y=-0.25))
    return fig


def _fmt_bytes(n: float | None) -> str:
    if not n:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def live(lab_id: str, render_result: Callable | None = None) -> None:
    """Progress of the current run, refreshed every second while it is active."""
    rid = _current_run(lab_id)
    if rid is None:
        return

    @st.fragment(run_every=POLL_SECONDS)
    def _panel():
        run = jobs.get_run(rid)
        if run is None:
            return
        steps = jobs.events(rid, types=("step",))
        start = next(iter(jobs.events(rid, types=("start",))), {})
        total = start.get("steps") or run.params.get("steps") or 1
        last = steps[-1] if steps else {}
        if run.status == "queued":
            st.info(t("lab.queued", position=run.position))
        elif run.status == "running":
            # a multi-part lab reports "progress" (0..1) itself; a single run is step / steps
            frac = min(1.0, last.get("progress", last.get("step", 0) / max(total, 1)))
            st.progress(frac, text=t("lab.progress", step=last.get("step", 0), total=total,
                                     eta=f"{last.get('eta', math.nan):.0f}"))
            c1, c2, c3 = st.columns(3)
            c1.metric(t("lab.tokens_per_s"), f"{last.get('tokens_per_s', 0):,.0f}")
            c2.metric(t("lab.memory"), _fmt_bytes((last.get("peak_cuda_bytes") or
                                                   (last.get("param_bytes", 0) + last.get("grad_bytes", 0)
                                                    + last.get("optimizer_bytes", 0)))))
            c3.metric(t("lab.loss"), f"{last.get('loss', math.nan):.4f}")
        elif run.status == "done":
            st.success(t("lab.done", id=rid, seconds=f"{(run.finished or 0) - (run.started or 0):.1f}"))
        elif run.status == "cancelled":
            st.warning(t("lab.cancelled", id=rid))
        else:
            st.error(t("lab.failed", id=rid, error=run.error or "?"))
        if run.status in ("queued", "running"):
            if st.button(t("lab.cancel"), key=f"cancel.{lab_id}.{rid}"):
                jobs.cancel(rid)
                st.rerun(scope="fragment")
        if steps:
            st.plotly_chart(curves([rid]), key=f"curve.{lab_id}.{rid}.{len(steps)}")
        if run.status == "done" and render_result is not None:
            render_result(run)
        if run.status not in ("queued", "running"):
            st.session_state[f"done.{lab_id}"] = rid

    _panel()


def history(lab_id: str) -> None:
    """Finished runs of this lab: a table, an overlay of chosen runs, adapter downloads."""
    runs = [r for r in jobs.list_runs(lab_id, limit=30) if r.status in ("done", "failed", "cancelled")]
    if not runs:
        st.caption(t("lab.no_history"))
        return
    table = pd.DataFrame([{"#": r.id, t("lab.status"): r.status, t("lab.params"): _short(r.params),
                           t("lab.final_acc"): (r.result or {}).get("final", {}).get("eval_accuracy"),
                           t("lab.error"): r.error or ""} for r in runs])
    st.dataframe(table, hide_index=True, use_container_width=True)
    chosen = st.multiselect(t("lab.overlay"), [r.id for r in runs if r.status == "done"],
                            default=[r.id for r in runs if r.status == "done"][:2], key=f"overlay.{lab_id}")
    if chosen:
        st.plotly_chart(curves(chosen), key=f"overlay-chart.{lab_id}.{'-'.join(map(str, chosen))}")
    for r in runs:
        adapter = jobs.run_dir(r.id) / "adapter"
        if r.status == "done" and adapter.is_dir():
            st.download_button(t("lab.download_adapter", id=r.id), _zip(adapter), file_name=f"{lab_id}-run{r.id}.zip",
                               key=f"dl.{lab_id}.{r.id}")


def _short(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())[:120]


def _zip(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(folder))
    return buf.getvalue()


def lab_panel(lab_id: str, render_result: Callable | None = None, only: list[str] | None = None,
              fixed: dict | None = None) -> None:
    """The whole lab block: form, start, live view, history."""
    lab = get_lab(lab_id)
    st.caption(pick(lab.summary))
    values = params_form(lab_id, only=only, fixed=fixed)
    start_button(lab_id, values)
    live(lab_id, render_result)
    with st.expander(t("lab.history")):
        history(lab_id)
