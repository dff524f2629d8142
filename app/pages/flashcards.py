"""Flashcards: FSRS-scheduled review. Question → reveal → Again / Hard / Good / Easy, each button
labelled with the interval it will set. ``?card=<id>`` opens one card directly."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app.i18n import lang, page_title, t
from app.study import srs
from app.study import widgets as W

NEW_LIMIT_RANGE = (0, 200)
DEFAULT_NEW_LIMIT = 20
BUTTONS = {1: "fc.again", 2: "fc.hard", 3: "fc.good", 4: "fc.easy"}

st.title(page_title("flashcards"))
store = W.open_store()
deck = W.load_deck()
pid = W.profile_id(store)
now = srs.now_utc()
flash = st.session_state.pop("fc_flash", None)
if flash:
    st.success(flash)

# ---------------------------------------------------------------- settings
with st.expander(t("fc.settings")):
    lo, hi = srs.RETENTION_RANGE
    current = srs.desired_retention(store, pid)
    ret = st.slider(t("fc.retention"), lo, hi, current, 0.01, help=t("fc.retention_help"), key=f"fc_retention_{pid}")
    if ret != current:
        srs.set_desired_retention(store, pid, ret)
    saved = store.get_setting(pid, "new_per_day", "")
    new_limit = int(saved) if saved.isdigit() and int(saved) <= NEW_LIMIT_RANGE[1] else DEFAULT_NEW_LIMIT
    n = st.number_input(t("fc.new_per_day"), NEW_LIMIT_RANGE[0], NEW_LIMIT_RANGE[1], new_limit, 1,
                        key=f"fc_new_limit_{pid}")
    if int(n) != new_limit:
        store.set_setting(pid, "new_per_day", str(int(n)))
        new_limit = int(n)
topics = W.topic_picker(deck, "fc_topics")
if not topics:
    st.warning(t("study.pick_topic"))
    st.stop()

# ---------------------------------------------------------------- due counts per topic
counts = srs.due_counts(store, pid, deck, now, topics)
cols = st.columns(3)
cols[0].metric(t("fc.due"), sum(c["due"] for c in counts.values()))
cols[1].metric(t("fc.new"), sum(c["new"] for c in counts.values()))
cols[2].metric(t("fc.total"), sum(c["total"] for c in counts.values()))
with st.expander(t("fc.per_topic")):
    st.dataframe(pd.DataFrame([{t("study.topic"): W.topic_label(k), t("fc.due"): v["due"], t("fc.new"): v["new"],
                                t("fc.total"): v["total"]} for k, v in counts.items()]), hide_index=True)

# ---------------------------------------------------------------- which card
asked = st.query_params.get("card")
card_id = None
if asked:
    if asked in deck.cards:
        card_id = asked
        st.info(t("fc.direct", id=asked))
    else:
        st.error(t("fc.unknown_card", id=asked, n=len(deck.cards)))
if card_id is None:
    q = srs.queue(store, pid, deck, topics, now, new_limit)
    card_id = st.session_state.get("fc_current")
    # the card on screen stays until it is rated, even if another tab just rated it (see fc.stale)
    if card_id not in q and not (card_id in deck.cards and deck.cards[card_id].topic in topics):
        card_id = q[0] if q else None
if card_id is None:
    st.success(t("fc.all_done"))
    upcoming = [r["due"] for cid, r in store.card_states(pid).items() if cid in deck.cards and deck.cards[cid].topic in topics]
    if upcoming:
        st.caption(t("fc.next_due", when=srs.format_interval(pd.Timestamp(min(upcoming), unit="s", tz="UTC") - now, lang())))
    st.stop()

if st.session_state.get("fc_current") != card_id:
    st.session_state["fc_current"] = card_id
    st.session_state["fc_revealed"] = False
card = deck.cards[card_id]
fsrs_card = srs.load(store, pid, card_id)
if "fc_shown" not in st.session_state or st.session_state.get("fc_shown_for") != card_id:
    st.session_state["fc_shown"] = srs.card_json_last_review(fsrs_card)
    st.session_state["fc_shown_for"] = card_id

# ---------------------------------------------------------------- the card
with st.container(border=True):
    st.caption(f"{t('fc.state')}: {t('fc.state.' + srs.state_name(fsrs_card))}")
    W.show_question(card)
    if not st.session_state.get("fc_revealed"):
        if st.button(t("fc.reveal"), key="fc_reveal", type="primary"):
            st.session_state["fc_revealed"] = True
            st.rerun()
    else:
        st.divider()
        W.show_answer(card)

if st.session_state.get("fc_revealed"):
    previews = srs.preview(fsrs_card, srs.scheduler(srs.desired_retention(store, pid)), now, card_id)
    buttons = st.columns(4)
    for col, rating in zip(buttons, srs.RATINGS):
        label = f"{t(BUTTONS[int(rating)])} · {srs.format_interval(previews[rating], lang())}"
        if col.button(label, key=f"fc_rate_{int(rating)}"):
            res = srs.review(store, pid, card_id, rating, shown_last_review=st.session_state.get("fc_shown"))
            st.session_state["fc_flash"] = t("fc.saved", id=card_id, when=srs.format_interval(res.interval, lang()))
            if res.stale:
                st.session_state["fc_flash"] += " " + t("fc.stale")
            for k in ("fc_current", "fc_revealed", "fc_shown", "fc_shown_for"):
                st.session_state.pop(k, None)
            if asked:
                del st.query_params["card"]
            st.rerun()
