"""Progress: due today, retention, streak, weakest topics, quiz and interview score history — and an
Anki (.apkg) export of the chosen topics in the chosen language."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app.i18n import LABELS, LANGS, lang, page_title, pick, t
from app.study import anki
from app.study import drills as study_drills
from app.study import progress as P
from app.study import widgets as W
from app.study.cards import CardError
from labs.drills import drill_ids, get_drill

st.title(page_title("progress"))
store = W.open_store()
deck = W.load_deck()
pid = W.profile_id(store)
s = P.summary(store, pid, deck)

# ---------------------------------------------------------------- headline numbers
c = st.columns(5)
c[0].metric(t("prog.due_today"), s["due_today"])
c[1].metric(t("prog.new"), s["new"])
c[2].metric(t("prog.retention"), "—" if s["retention"] is None else f"{s['retention']:.0%}",
            help=t("prog.retention_help", n=s["retention_n"]))
c[3].metric(t("prog.streak"), s["streak"], help=t("prog.streak_help"))
c[4].metric(t("prog.reviews"), s["reviews"])
st.caption(t("prog.seen", seen=s["seen"], total=s["total"]))


def _fig(title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, height=320, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.2))
    return fig


left, right = st.columns(2)
with left:
    fig = _fig(t("prog.forecast"))
    fig.add_bar(x=[d["date"] for d in s["forecast"]], y=[d["due"] for d in s["forecast"]], name=t("prog.due"))
    st.plotly_chart(fig)
with right:
    fig = _fig(t("prog.daily"))
    fig.add_bar(x=[d["date"] for d in s["daily"]], y=[d["reviews"] for d in s["daily"]], name=t("prog.reviews"))
    fig.add_scatter(x=[d["date"] for d in s["daily"]], y=[d["retention"] for d in s["daily"]], yaxis="y2",
                    mode="lines+markers", name=t("prog.retention"), connectgaps=False)
    fig.update_layout(yaxis2=dict(overlaying="y", side="right", range=[0, 1], tickformat=".0%"))
    st.plotly_chart(fig)

left, right = st.columns(2)
with left:
    topics = list(s["per_topic"])
    fig = _fig(t("prog.per_topic"))
    labels = [W.topic_label(tp) for tp in topics]
    pt = s["per_topic"]
    fig.add_bar(y=labels, x=[pt[tp]["due"] for tp in topics], name=t("prog.due"), orientation="h")
    fig.add_bar(y=labels, x=[pt[tp]["total"] - pt[tp]["due"] - pt[tp]["new"] for tp in topics],
                name=t("prog.learned"), orientation="h")
    fig.add_bar(y=labels, x=[pt[tp]["new"] for tp in topics], name=t("prog.new"), orientation="h")
    fig.update_layout(barmode="stack", height=max(320, 24 * len(topics)))
    st.plotly_chart(fig)
with right:
    weak = s["weakest"]
    if weak:
        fig = _fig(t("prog.weakest"))
        fig.add_bar(y=[W.topic_label(w["topic"]) for w in weak], x=[w["accuracy"] for w in weak], orientation="h",
                    text=[f"{w['accuracy']:.0%} · {w['events']}" for w in weak], name=t("prog.accuracy"))
        fig.update_layout(xaxis=dict(range=[0, 1], tickformat=".0%"), yaxis=dict(autorange="reversed"))
        st.plotly_chart(fig)
    else:
        st.info(t("prog.weakest_empty"))

scores = s["scores"]
if scores:
    fig = _fig(t("prog.scores"))
    for kind in ("quiz", "interview"):
        rows = [r for r in scores if r["kind"] == kind]
        if rows:
            fig.add_scatter(x=[r["when"] for r in rows], y=[r["score"] for r in rows], mode="lines+markers",
                            name=t(f"prog.kind.{kind}"))
    fig.update_layout(yaxis=dict(range=[0, 1.05], tickformat=".0%"))
    st.plotly_chart(fig)
else:
    st.info(t("prog.scores_empty"))

# ---------------------------------------------------------------- drills (app/pages/drills.py)
st.subheader(t("prog.drills"))
_drills = {d: get_drill(d) for d in drill_ids()}
ds = study_drills.summary(store, pid, _drills)
st.caption(t("prog.drills_counts", passed=ds["passed"], total=ds["total"], attempted=ds["attempted"],
             attempts=ds["attempts"]))
for f in ds["failing"]:
    st.markdown("- " + t("prog.drills_failing", drill=f"[{pick(_drills[f['drill']].title)}](/drills?drill={f['drill']})",
                         cards=", ".join(f"[{c}](/flashcards?card={c})" for c in f["cards"])))

missed = P.recent_missed(store, pid, deck, lang())
if missed:
    with st.expander(t("prog.missed", n=len(missed))):
        for m in missed:
            st.markdown(f"**{m['question']}** — {m['q']}\n" + "\n".join(f"- {p}" for p in m["missed"]))

# ---------------------------------------------------------------- Anki export
st.subheader(t("prog.anki"))
st.caption(t("prog.anki_help"))
topics = W.topic_picker(deck, "anki_topics")
export_lang = st.radio(t("prog.anki_lang"), LANGS, index=LANGS.index(lang()), format_func=LABELS.get,
                       horizontal=True, key="anki_lang")
if st.button(t("prog.anki_build"), key="anki_build"):
    if not topics:
        st.error(t("study.pick_topic"))
    else:
        try:
            data = anki.export_bytes(deck, topics, export_lang)
            st.session_state["anki_apkg"] = (data, f"peftlab-{export_lang}.apkg",
                                             len(deck.select(topics)))
        except (CardError, RuntimeError, ValueError) as e:
            st.error(t("prog.anki_failed", error=str(e)))
built = st.session_state.get("anki_apkg")
if built:
    data, name, n = built
    st.success(t("prog.anki_ready", n=n, kb=f"{len(data) / 1024:.0f}"))
    st.download_button(t("prog.anki_download"), data, file_name=name, mime="application/octet-stream",
                       key="anki_download")
