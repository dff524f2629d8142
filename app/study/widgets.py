"""Streamlit helpers shared by the four study pages (the only module of ``app.study`` that imports
Streamlit): open the store or explain why not, load the deck or explain why not, pick a profile,
render a card's question and answer.
"""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from app.i18n import lang, t
from app.study import cards as C
from app.study.store import Store, StoreCorrupt, StoreError, data_dir, start_fresh

PROFILE_KEY = "study_profile"


def open_store() -> Store:
    """The store, or an error with a "start fresh, keep a backup" button, then ``st.stop()``."""
    backup = st.session_state.pop("_study_backup", None)
    if backup:
        st.success(t("study.fresh_done", backup=backup))
    try:
        return Store()
    except StoreCorrupt as e:
        st.error(t("study.corrupt", path=str(e.path)))
        st.caption(str(e))
        if st.button(t("study.start_fresh"), key="study_start_fresh", type="primary"):
            st.session_state["_study_backup"] = str(start_fresh(e.path.parent))
            st.rerun()
    except StoreError as e:
        st.error(t("study.store_error", reason=str(e)))
    except OSError as e:  # unwritable data folder
        st.error(t("study.store_error", reason=f"{data_dir()}: {e}"))
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


@st.cache_resource(show_spinner=False)
def _deck_cached(root: str, stamp: tuple) -> C.Deck:
    return C.load_deck(root)


def _content_root() -> Path:
    return Path(os.environ.get(C.ENV_CONTENT) or C.CONTENT)


def cached_deck() -> C.Deck:
    """The validated deck, parsed once and reloaded when a YAML file changes; raises C.CardError."""
    root = _content_root()
    files = sorted(root.glob("cards/*.yaml")) + sorted(root.glob("interview/*.yaml"))
    return _deck_cached(str(root), tuple((str(p), p.stat().st_mtime_ns) for p in files))


def load_deck() -> C.Deck:
    """The validated deck (reloaded when a YAML file changes), or an error naming the bad card."""
    try:
        deck = cached_deck()
    except C.CardError as e:
        st.error(t("study.bad_card", error=str(e)))
        st.stop()
    if not deck.cards:
        st.warning(t("study.no_cards", path=str(_content_root() / "cards")))
        st.stop()
    return deck


def profile_id(store: Store) -> int:
    """Sidebar: choose a profile or add one. The choice is kept in session state."""
    names = [n for _, n in store.profiles()]
    current = st.session_state.get(PROFILE_KEY, names[0])
    if current not in names:
        current = names[0]
    with st.sidebar:
        choice = st.selectbox(t("study.profile"), names, index=names.index(current))
        with st.expander(t("study.add_profile")):
            new = st.text_input(t("study.profile_name"), key="study_new_profile", max_chars=40)
            if st.button(t("study.create"), key="study_create_profile"):
                try:
                    store.profile_id(new)
                    st.session_state[PROFILE_KEY] = new.strip()
                    st.rerun()
                except StoreError as e:
                    st.error(str(e))
    st.session_state[PROFILE_KEY] = choice
    return store.profile_id(choice)


def topic_label(topic: str) -> str:
    return t(f"topic.{topic}")


def topic_picker(deck: C.Deck, key: str, default_all: bool = True) -> list[str]:
    topics = deck.topics()
    return st.multiselect(t("study.topics"), topics, default=topics if default_all else [],
                          format_func=topic_label, key=key)


def show_question(card: C.Card) -> None:
    lg = lang()
    st.caption(f"{card.id} · {topic_label(card.topic)} · {t('study.difficulty')} {'★' * card.difficulty}")
    st.markdown(f"#### {card.q(lg)}")
    if card.kind == "mcq":
        for letter, o in zip("ABCDE", card.options):
            st.markdown(f"**{letter}.** {o[lg]}")


def show_answer(card: C.Card) -> None:
    """Short answer, then the computed number (numeric), every option's why (mcq), the key points."""
    lg = lang()
    st.markdown(f"**{t('study.answer')}:** {card.a(lg)}")
    if card.kind == "numeric":
        try:
            st.markdown(f"**{t('study.value')}:** {C.numeric_answer(card):.4g} {card.unit}")
        except (C.CardError, RuntimeError) as e:
            st.warning(t("study.no_calculator", error=str(e)))
    if card.kind == "mcq":
        for letter, o in zip("ABCDE", card.options):
            mark = "✅" if o["correct"] else "❌"
            st.markdown(f"{mark} **{letter}.** {o[lg]} — _{o['why'][lg]}_")
    st.markdown(f"**{t('study.points')}:**")
    st.markdown("\n".join(f"- {p}" for p in card.points(lg)))
    links = [f"{t('study.page')}: `{card.page}`"] + ([f"{t('study.lab')}: `{card.lab}`"] if card.lab else [])
    st.caption(" · ".join(links))
