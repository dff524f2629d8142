"""Drills / 编程练习: write a PEFT method, run our graders on it in a sandbox, learn from the report.

    pick a drill (?drill=<id>) → statement → editor (streamlit-code-editor, or a text area without it)
    → Run tests: labs.drills.runner.check on a warm sandbox (labs.drills.pool) → per-test report
    → hints one at a time, the reference solution after a failed attempt or on request, the explanation
    → every attempt saved (app.study.drills); a failed one makes the drill's flashcards due now (FSRS)
"""
from __future__ import annotations

from datetime import datetime, timezone

import streamlit as st

from app.i18n import lang, page_title, pick, t
from app.study import drills as D
from app.study import widgets as W
from labs.drills import drill_ids, get_drill
from labs.drills.sandbox import code_allowed, probe

try:  # a maintained editor component with Python highlighting; a text area when it is not installed
    from code_editor import code_editor
except ImportError:  # pragma: no cover - depends on the environment
    code_editor = None

st.title(page_title("drills"))
st.caption(t("dr.intro"))
store = W.open_store()
pid = W.profile_id(store)
status = D.status(store, pid)
ids = drill_ids()

# ---------------------------------------------------------------- which drill
wanted = st.query_params.get("drill")
if wanted in ids and wanted != st.session_state.get("drill_link"):     # a new ?drill= link wins over the
    st.session_state["drill_pick"] = st.session_state["drill_link"] = wanted   # session's last choice
elif "drill_pick" not in st.session_state:
    st.session_state["drill_pick"] = ids[0]


def _label(did: str) -> str:
    d = get_drill(did)
    mark = {"passed": "✅ ", "failed": "❌ "}.get(status.get(did, ""), "")
    return f"{mark}{pick(d.title)} · {'★' * d.difficulty}"


labels = {did: _label(did) for did in ids}          # computed here: format_func may be called outside the run
drill_id = st.selectbox(t("dr.pick"), ids, key="drill_pick", format_func=labels.__getitem__)
st.query_params["drill"] = st.session_state["drill_link"] = drill_id
drill = get_drill(drill_id)
lg = lang()

allowed, why = code_allowed(st.get_option("server.address"))
if allowed:
    from labs.drills.pool import pool

    ok, no_sandbox = probe()
    if ok:
        pool().prewarm(drill.grader)     # the next Run finds torch and this drill's grader already loaded
else:
    ok, no_sandbox = False, ""

st.markdown(drill.statement[lg])

# ---------------------------------------------------------------- the code
code_key, ver_key, seen_key = f"drill_code::{drill_id}", f"drill_ver::{drill_id}", f"drill_seen::{drill_id}"
if code_key not in st.session_state:
    past = D.history(store, pid, drill_id, limit=1)
    st.session_state[code_key] = past[0]["code"] if past else drill.starter()
    st.session_state[ver_key] = 0


def _set_code(code: str) -> None:
    st.session_state[code_key] = code
    st.session_state[ver_key] = st.session_state.get(ver_key, 0) + 1    # remounts the editor with the new code


if code_editor is not None:
    st.caption(t("dr.editor_help"))
    resp = code_editor(st.session_state[code_key], lang="python", height=[14, 30],
                       response_mode=["debounce", "blur"], key=f"drill_editor::{drill_id}::{st.session_state[ver_key]}")
    if isinstance(resp, dict) and resp.get("id") and resp.get("id") != st.session_state.get(seen_key):
        st.session_state[seen_key] = resp["id"]
        st.session_state[code_key] = resp.get("text", "")
else:
    edited = st.text_area(t("dr.editor_fallback"), st.session_state[code_key], height=360,
                          key=f"drill_area::{drill_id}::{st.session_state[ver_key]}")
    st.session_state[code_key] = edited

# ---------------------------------------------------------------- buttons
hints_key, sol_key, last_key = f"drill_hints::{drill_id}", f"drill_sol::{drill_id}", f"drill_last::{drill_id}"
shown = st.session_state.get(hints_key, 0)
c1, c2, c3, c4 = st.columns([1, 1, 1, 1])
run = c1.button(t("dr.run"), type="primary", key="drill_run", disabled=not (allowed and ok))
left = len(drill.hints) - shown
if c2.button(t("dr.hint", n=left), key="drill_hint", disabled=left == 0):
    st.session_state[hints_key] = shown = shown + 1
if c3.button(t("dr.show_solution"), key="drill_show_solution"):
    st.session_state[sol_key] = True
if c4.button(t("dr.reset"), key="drill_reset"):
    _set_code(drill.starter())
    st.rerun()

if not allowed:
    st.warning(t("dr.code_off", why=why, id=drill_id))
elif not ok:
    st.error(t("dr.no_sandbox", why=no_sandbox))
else:
    st.caption(t("dr.code_on", why=why))

for i in range(shown):
    st.info(f"**{t('dr.hint_n', n=i + 1)}** — {drill.hints[i][lg]}")

# ---------------------------------------------------------------- grading
if run and allowed and ok:
    from labs.drills.pool import pool
    from labs.drills.runner import check
    from labs.drills.sandbox import SandboxUnavailable

    code = st.session_state[code_key]
    try:
        report = check(drill_id, code, lang=lg, sandbox=pool().take())
    except SandboxUnavailable as e:
        st.error(t("dr.no_sandbox", why=str(e)))
        st.stop()
    result = D.record_attempt(store, pid, drill, report.to_dict(), code)
    st.session_state[last_key] = {"report": report.to_dict(), "due": result["due_cards"]}

last = st.session_state.get(last_key)
if last:
    rep = last["report"]
    tests = rep["tests"]
    failed = [x for x in tests if not x["passed"]]
    if not tests:                                  # refused: no test could run
        st.error(t("dr.verdict", msg=rep["message"]))
    elif rep["passed"]:
        st.success(t("dr.passed", n=len(tests), s=rep["seconds"], seed=rep["seed"]))
    else:
        st.error(t("dr.failed", k=len(failed), n=len(tests), s=rep["seconds"], seed=rep["seed"]))
    for x in tests:
        if x["passed"]:
            st.markdown(f"✅ `{x['name']}`")
        else:
            st.markdown(f"❌ `{x['name']}`")
            st.code(x["message"], language=None, wrap_lines=True)
    if rep.get("perf"):
        p = rep["perf"]
        st.caption(t("dr.perf", case=p["case"], yours=p["yours_ms"], ref=p["reference_ms"], ratio=p["ratio"]))
    if rep.get("output", "").strip():
        with st.expander(t("dr.output")):
            st.code(rep["output"][-4000:], language=None)
    if last["due"]:
        st.warning(t("dr.cards_due", cards=", ".join(f"[{c}](/flashcards?card={c})" for c in last["due"])))

if st.session_state.get(sol_key) or (last and not last["report"]["passed"]):
    with st.expander(t("dr.solution"), expanded=bool(st.session_state.get(sol_key))):
        st.code(drill.solution(), language="python")

if last or st.session_state.get(sol_key):
    with st.expander(t("dr.explanation"), expanded=bool(last and last["report"]["passed"])):
        st.markdown(drill.explanation[lg])
links = t("dr.links", page=f"[{page_title(drill.page)}](/{drill.page})", lab=drill.lab or "—",
          cards=", ".join(f"[{c}](/flashcards?card={c})" for c in drill.cards))
st.caption(links)

# ---------------------------------------------------------------- history (persists across reloads)
st.subheader(t("dr.history"))
past = D.history(store, pid, drill_id, limit=20)
if not past:
    st.caption(t("dr.history_empty"))
else:
    st.table([{t("dr.col.when"): datetime.fromtimestamp(a["at"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
                   t("dr.col.result"): "✅" if a["passed"] else "❌",
                   t("dr.col.tests"): f"{a['n_passed']}/{a['n_tests']}",
                   t("dr.col.seconds"): f"{a['seconds']:.2f}"} for a in past])
    pick_at = st.selectbox(t("dr.attempt"), [a["id"] for a in past], key="drill_load_pick",
                           format_func=lambda i: next(datetime.fromtimestamp(a["at"], timezone.utc).strftime(
                               "%H:%M:%S") + (" ✅" if a["passed"] else " ❌") for a in past if a["id"] == i))
    if st.button(t("dr.load"), key="drill_load"):
        _set_code(next(a["code"] for a in past if a["id"] == pick_at))
        st.rerun()
