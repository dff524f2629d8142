"""Language for every page: 中文 or English, chosen once and kept across pages.

Order of precedence: the sidebar switch (session state) → ``?lang=`` in the URL → the browser's
locale (``st.context.locale``) → English. UI strings live in ``content/ui*.yaml`` as
``key: {en: ..., zh: ...}``; a missing key shows the key itself rather than failing.
"""
from __future__ import annotations

import functools
from pathlib import Path

import streamlit as st
import yaml

LANGS = ("en", "zh")
LABELS = {"en": "English", "zh": "中文"}
CONTENT = Path(__file__).resolve().parent.parent / "content"


@functools.lru_cache(maxsize=1)
def _strings() -> dict:
    table: dict = {}
    for path in sorted(CONTENT.glob("ui*.yaml")):
        table.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return table


def _from_browser() -> str:
    try:
        loc = (st.context.locale or "").lower()
    except Exception:  # outside a browser session (AppTest, bare mode)
        loc = ""
    return "zh" if loc.startswith("zh") else "en"


def lang() -> str:
    """The current language, "en" or "zh"."""
    cur = st.session_state.get("lang")
    if cur in LANGS:
        return cur
    q = st.query_params.get("lang")
    cur = q if q in LANGS else _from_browser()
    st.session_state["lang"] = cur
    return cur


def t(key: str, **fmt) -> str:
    """UI string ``key`` in the current language, ``str.format``-ed with ``fmt``."""
    entry = _strings().get(key)
    if not isinstance(entry, dict):
        return key
    text = entry.get(lang()) or entry.get("en") or key
    return text.format(**fmt) if fmt else text


def pick(obj, default: str = "") -> str:
    """``{en: .., zh: ..}`` → the text in the current language (falls back to English)."""
    if isinstance(obj, dict):
        return obj.get(lang()) or obj.get("en") or default
    return default if obj is None else str(obj)


def language_switch() -> None:
    """The 中文/English switch; writes the choice to session state and the URL."""
    current = lang()

    def _changed() -> None:
        st.session_state["lang"] = st.session_state["_lang_choice"]
        st.query_params["lang"] = st.session_state["lang"]

    st.session_state.setdefault("_lang_choice", current)
    st.session_state["_lang_choice"] = current
    st.radio("Language / 语言", LANGS, format_func=LABELS.get, key="_lang_choice",
             horizontal=True, on_change=_changed)


def page_title(page_id: str) -> str:
    """The title of page ``page_id`` (content/pages/index.yaml) in the current language: its sidebar entry and
    its heading."""
    from app.page_registry import get

    return pick(get(page_id).title)
