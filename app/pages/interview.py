"""Mock interview: N random open questions, a timer per question, type the answer or say it out loud,
then self-grade against the key-points checklist. The score and the missed points are saved."""
from __future__ import annotations

import random
import time

import streamlit as st

from app.i18n import lang, page_title, t
from app.study import widgets as W

N_RANGE = (1, 10)
DEFAULT_N = 3
MINUTES_RANGE = (1, 10)
DEFAULT_MINUTES = 3

st.title(page_title("interview"))
store = W.open_store()
deck = W.load_deck()
pid = W.profile_id(store)
lg = lang()


def _pool(topics: list[str]) -> dict:
    """Interview questions (content/interview/questions.yaml) on these topics; open cards if none."""
    qs = {q.id: q for q in deck.questions.values() if q.topic in topics or deck.cards[q.card].topic in topics}
    return qs or {c.id: c for c in deck.select(topics, ["open"])}


def _item(item_id: str):
    return deck.questions.get(item_id) or deck.cards[item_id]


@st.fragment(run_every=1.0)
def _timer(started: float, limit_s: float) -> None:
    used = time.time() - started
    left = limit_s - used
    mm, ss = divmod(int(abs(left)), 60)
    if left >= 0:
        st.progress(min(used / limit_s, 1.0), text=t("iv.time_left", t=f"{mm}:{ss:02d}"))
    else:
        st.warning(t("iv.over_time", t=f"{mm}:{ss:02d}"))


iv = st.session_state.get("iv")
if iv and any(i not in deck.questions and i not in deck.cards for i in iv["items"]):
    st.session_state.pop("iv")
    iv = None

# ---------------------------------------------------------------- setup
if iv is None:
    st.markdown(t("iv.intro"))
    topics = W.topic_picker(deck, "iv_topics")
    n = st.number_input(t("iv.n"), N_RANGE[0], N_RANGE[1], DEFAULT_N, 1, key="iv_n")
    minutes = st.number_input(t("iv.minutes"), MINUTES_RANGE[0], MINUTES_RANGE[1], DEFAULT_MINUTES, 1, key="iv_minutes")
    if st.button(t("iv.start"), key="iv_start", type="primary"):
        pool = _pool(topics) if topics else {}
        if not pool:
            st.error(t("iv.empty_pool"))
        else:
            ids = random.sample(sorted(pool), min(int(n), len(pool)))
            st.session_state["iv"] = {"items": ids, "i": 0, "phase": "answer", "limit_s": 60.0 * int(minutes),
                                      "t0": time.time(), "started": time.time(), "details": [], "saved": False}
            st.rerun()
    st.stop()

# ---------------------------------------------------------------- one question
items, i = iv["items"], iv["i"]
if i < len(items):
    item = _item(items[i])
    points = item.points(lg)
    st.progress(i / len(items), text=t("iv.progress", i=i + 1, n=len(items)))
    with st.container(border=True):
        st.caption(item.id)
        st.markdown(f"### {item.q(lg)}")
        if iv["phase"] == "answer":
            _timer(iv["started"], iv["limit_s"])
            typed = st.text_area(t("iv.answer"), key=f"iv_answer_{i}", height=180)
            # st.audio_input (Streamlit >= 1.39): a recording to play back while self-grading; never uploaded.
            audio = st.audio_input(t("iv.record"), key=f"iv_audio_{i}") if hasattr(st, "audio_input") else None
            spoken = st.checkbox(t("iv.spoken"), key=f"iv_spoken_{i}") or audio is not None
            if st.button(t("iv.done"), key="iv_done", type="primary"):
                if not (typed or "").strip() and not spoken:
                    st.error(t("iv.empty"))
                    st.stop()
                iv.update(phase="grade", typed=(typed or "").strip(), spoken=bool(spoken),
                          audio=audio.getvalue() if audio is not None else None,
                          seconds=time.time() - iv["started"])
                st.rerun()
        else:
            over = iv["seconds"] > iv["limit_s"]
            st.caption(t("iv.took", s=f"{iv['seconds']:.0f}") + (" · " + t("iv.was_over") if over else ""))
            if iv["typed"]:
                st.markdown(f"**{t('iv.you_wrote')}:**")
                st.text(iv["typed"])
            if iv.get("audio"):
                st.audio(iv["audio"], format="audio/wav")
            st.markdown(f"**{t('iv.checklist')}**")
            hit = [j for j, p in enumerate(points) if st.checkbox(p, key=f"iv_pt_{i}_{j}")]
            if st.button(t("iv.save_next"), key="iv_next", type="primary"):
                missed = [j for j in range(len(points)) if j not in hit]
                iv["details"].append({"question": item.id, "hit": hit, "missed": missed, "n_points": len(points),
                                      "missed_text": [points[j] for j in missed], "lang": lg,
                                      "answer": iv["typed"], "spoken": iv["spoken"],
                                      "seconds": round(iv["seconds"], 1), "over_time": over})
                iv.update(i=i + 1, phase="answer", started=time.time())
                st.rerun()
    st.stop()

# ---------------------------------------------------------------- the end
details = iv["details"]
if not iv["saved"]:
    store.save_interview(pid, details, duration_s=time.time() - iv["t0"])
    iv["saved"] = True
hit = sum(len(d["hit"]) for d in details)
asked = sum(d["n_points"] for d in details)
st.metric(t("iv.score"), f"{hit} / {asked}", f"{hit / asked:.0%}")
missed = [d for d in details if d["missed"]]
if missed:
    st.subheader(t("iv.missed"))
    for d in missed:
        item = _item(d["question"])
        with st.expander(f"{item.id} — {item.q(lg)}"):
            pts = item.points(lg)
            st.markdown("\n".join(f"- {pts[j]}" for j in d["missed"]))
else:
    st.success(t("iv.all_hit"))
if st.button(t("iv.again"), key="iv_again"):
    st.session_state.pop("iv")
    st.rerun()
