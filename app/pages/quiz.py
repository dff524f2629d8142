"""Quiz: pick topics and size → answer mcq / numeric / open items with immediate feedback (the why of
every option, the calculator's number) → a review of mistakes → the wrong-answer queue to retry."""
from __future__ import annotations

import random

import streamlit as st

from app.i18n import lang, page_title, t
from app.study import cards as C
from app.study import widgets as W

SIZE_RANGE = (1, 50)
DEFAULT_SIZE = 10
KINDS = ("mcq", "numeric", "open")

st.title(page_title("quiz"))
store = W.open_store()
deck = W.load_deck()
pid = W.profile_id(store)
lg = lang()


def _answerable(cards: list[C.Card]) -> tuple[list[C.Card], list[str]]:
    """Drop numeric cards whose number the calculator cannot produce right now (and say which)."""
    ok, skipped = [], []
    for c in cards:
        try:
            if c.kind == "numeric":
                C.numeric_answer(c)
            ok.append(c)
        except (C.CardError, RuntimeError):
            skipped.append(c.id)
    return ok, skipped


def _start(ids: list[str], topics: list[str], mode: str) -> None:
    st.session_state["quiz"] = {"items": ids, "i": 0, "answers": [], "checked": False,
                                "topics": topics, "mode": mode, "saved": False}
    for k in [k for k in st.session_state if str(k).startswith("quiz_in_")]:
        del st.session_state[k]
    st.rerun()


quiz = st.session_state.get("quiz")
if quiz and any(cid not in deck.cards for cid in quiz["items"]):  # the deck changed under a running quiz
    st.session_state.pop("quiz")
    quiz = None

# ---------------------------------------------------------------- setup
if quiz is None:
    topics = W.topic_picker(deck, "quiz_topics")
    kinds = st.multiselect(t("quiz.kinds"), KINDS, default=list(KINDS), format_func=lambda k: t(f"quiz.kind.{k}"), key="quiz_kinds")
    size = st.number_input(t("quiz.size"), SIZE_RANGE[0], SIZE_RANGE[1], DEFAULT_SIZE, 1, key="quiz_size",
                           help=t("quiz.size_help", lo=SIZE_RANGE[0], hi=SIZE_RANGE[1]))
    wrong = [r["card_id"] for r in store.wrong_queue(pid) if r["card_id"] in deck.cards]
    c1, c2 = st.columns(2)
    if c1.button(t("quiz.start"), key="quiz_start", type="primary"):
        if not topics or not kinds:
            st.error(t("quiz.need_topics_kinds"))
        else:
            pool, skipped = _answerable(deck.select(topics, kinds))
            if skipped:
                st.warning(t("quiz.skipped_numeric", ids=", ".join(skipped)))
            if not pool:
                st.error(t("quiz.empty_pool"))
            else:
                _start([c.id for c in random.sample(pool, min(int(size), len(pool)))], topics, "new")
    if c2.button(t("quiz.retry_wrong", n=len(wrong)), key="quiz_retry", disabled=not wrong):
        _start(wrong[: SIZE_RANGE[1]], sorted({deck.cards[c].topic for c in wrong}), "retry")
    st.stop()

# ---------------------------------------------------------------- one item
items, i = quiz["items"], quiz["i"]
if i < len(items):
    card = deck.cards[items[i]]
    st.progress(i / len(items), text=t("quiz.progress", i=i + 1, n=len(items)))
    with st.container(border=True):
        W.show_question(card)
        key = f"quiz_in_{i}"
        if not quiz["checked"]:
            if card.kind == "mcq":
                choice = st.radio(t("quiz.your_choice"), list(range(len(card.options))), index=None, key=key,
                                  format_func=lambda j: f"{'ABCDE'[j]}. {card.options[j][lg]}")
            elif card.kind == "numeric":
                typed = st.text_input(t("quiz.your_number", unit=card.unit), key=key, placeholder="12.5")
            else:
                typed = st.text_area(t("quiz.your_answer_optional"), key=key)
            label = t("quiz.reveal") if card.kind == "open" else t("quiz.check")
            if st.button(label, key="quiz_check", type="primary"):
                if card.kind == "mcq":
                    if choice is None:
                        st.error(t("quiz.empty_choice"))
                        st.stop()
                    quiz["answers"].append({"id": card.id, "ok": card.options[choice]["correct"], "given": "ABCDE"[choice]})
                elif card.kind == "numeric":
                    try:
                        val = C.parse_number(typed)
                    except ValueError:
                        st.error(t("quiz.empty_number") if not (typed or "").strip() else t("quiz.not_number", text=typed))
                        st.stop()
                    ok = C.within(val, C.numeric_answer(card), card.tolerance)
                    quiz["answers"].append({"id": card.id, "ok": ok, "given": f"{val:g}"})
                else:
                    quiz["typed"] = (typed or "").strip()  # the text area is gone after this rerun
                quiz["checked"] = True
                st.rerun()
        else:
            answered = quiz["answers"][i] if len(quiz["answers"]) > i else None
            if card.kind == "open" and answered is None:
                typed = quiz.get("typed", "")
                if typed:
                    st.markdown(f"**{t('quiz.you_wrote')}:** {typed}")
                st.divider()
                W.show_answer(card)
                g1, g2 = st.columns(2)
                for col, ok, k in ((g1, True, "quiz_self_yes"), (g2, False, "quiz_self_no")):
                    if col.button(t("quiz.self_yes" if ok else "quiz.self_no"), key=k):
                        quiz["answers"].append({"id": card.id, "ok": ok, "given": typed or "—"})
                        quiz["i"] += 1
                        quiz["checked"] = False
                        st.rerun()
            else:
                if answered["ok"]:
                    st.success(t("quiz.right", given=answered["given"]))
                else:
                    st.error(t("quiz.wrong", given=answered["given"]))
                if card.kind == "numeric":
                    st.info(t("quiz.numeric_detail", value=f"{C.numeric_answer(card):.4g}", unit=card.unit,
                              tol=f"{card.tolerance:.0%}"))
                W.show_answer(card)
                if st.button(t("quiz.next"), key="quiz_next", type="primary"):
                    quiz["i"] += 1
                    quiz["checked"] = False
                    st.rerun()
    st.stop()

# ---------------------------------------------------------------- the end: save once, review mistakes
answers = quiz["answers"]
if not quiz["saved"]:
    store.save_quiz(pid, quiz["topics"], [(a["id"], a["ok"], a["given"]) for a in answers])
    quiz["saved"] = True
right = sum(a["ok"] for a in answers)
st.metric(t("quiz.score"), f"{right} / {len(answers)}", f"{right / len(answers):.0%}")
mistakes = [a for a in answers if not a["ok"]]
if mistakes:
    st.subheader(t("quiz.mistakes"))
    for a in mistakes:
        card = deck.cards[a["id"]]
        with st.expander(f"{card.id} — {card.q(lg)}"):
            st.markdown(f"**{t('quiz.you_answered')}:** {a['given']}")
            W.show_answer(card)
else:
    st.success(t("quiz.perfect"))
wrong_now = [r["card_id"] for r in store.wrong_queue(pid) if r["card_id"] in deck.cards]
b1, b2 = st.columns(2)
if b1.button(t("quiz.retry_wrong", n=len(wrong_now)), key="quiz_retry_end", disabled=not wrong_now):
    _start(wrong_now[: SIZE_RANGE[1]], sorted({deck.cards[c].topic for c in wrong_now}), "retry")
if b2.button(t("quiz.new"), key="quiz_new"):
    st.session_state.pop("quiz")
    st.rerun()
