"""Small presentation helpers shared by pages: bilingual Markdown sections and flashcard links from content/."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # pages are also run on their own (AppTest, `streamlit run app/pages/x.py`)
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app.i18n import lang, t  # noqa: E402

PAGES_DIR = ROOT / "content" / "pages"


def section_text(page_id: str, section: str) -> str | None:
    """The Markdown of one section in the current language (English if the translation is missing)."""
    for code in (lang(), "en"):
        path = PAGES_DIR / page_id / f"{section}.{code}.md"
        if path.exists():
            return path.read_text(encoding="utf-8")
    return None


def concept_section(page_id: str, section: str, header: bool = True) -> None:
    """Render one section. Content is our own Markdown; raw HTML is never enabled."""
    if header:
        st.subheader(t(f"concept.section.{section}"))
    text = section_text(page_id, section)
    st.markdown(text if text is not None else t("concept.text_missing"))


def _deck_cards(match, unavailable_key: str) -> list | None:
    """The validated deck's cards for which ``match(card)`` (the deck cached across reruns, as the study pages
    use it); None, with a warning naming the error, when the deck cannot be loaded."""
    try:
        from app.study.widgets import cached_deck

        return [c for c in cached_deck().cards.values() if match(c)]
    except (OSError, ValueError) as err:
        st.warning(t(unavailable_key, error=str(err)))
        return None


def related_cards(match, title_key: str, unavailable_key: str, subheader: bool = False, limit: int = 12) -> None:
    """Links to the flashcards a concept page relates to (``match(card) -> bool``), opened with ``?card=``."""
    cards = _deck_cards(match, unavailable_key)
    if cards is None:
        return
    if subheader:
        st.subheader(t(title_key))
    else:
        st.markdown(f"**{t(title_key)}**")
    st.markdown("\n".join(f"- [{c.id}](/flashcards?card={c.id}) — {c.q(lang())}" for c in cards[:limit]))


def drill_links(page_id: str) -> None:
    """The drills whose `page` is ``page_id`` (content/drills/*/drill.yaml), as links that open them on /drills."""
    from labs.drills import drills_for_page

    drills = drills_for_page(page_id)
    if not drills:
        return
    st.divider()
    st.subheader(t("dr.page_drills"))
    st.markdown("\n".join(f"- [{d.title[lang()]}](/drills?drill={d.id}) · {'★' * d.difficulty}" for d in drills))


def topic_cards(topic: str, title_key: str, limit: int = 5) -> None:
    """The first ``limit`` questions of topic ``topic`` (content/cards/<topic>.yaml, from the validated deck) under a
    subheader, each opened with ``?card=``."""
    cards = _deck_cards(lambda c: c.topic == topic, "concept.cards_unavailable")
    if cards is None:
        return
    st.subheader(t(title_key))
    for card in cards[:limit]:
        st.markdown(f"- [{card.q(lang())}](/flashcards?card={card.id})")
