"""Small presentation helpers shared by pages: bilingual Markdown sections and flashcard links from content/."""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # pages are also run on their own (AppTest, `streamlit run app/pages/x.py`)
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
import yaml  # noqa: E402

from app.i18n import lang, page_title, t  # noqa: E402

PAGES_DIR = ROOT / "content" / "pages"
SECTIONS = ("why", "math", "picture", "lab", "seen", "interview")


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


def picture_beside_text(page_id: str, draw: Callable[[], None]) -> None:
    """The picture section: its heading, the interactive picture (``draw``) on the left, its text on the right."""
    st.subheader(t("concept.section.picture"))
    left, right = st.columns([3, 2])
    with right:
        concept_section(page_id, "picture", header=False)
    with left:
        draw()


def concept_page_without_lab(page_id: str, issue: int) -> None:
    """A concept page whose lab is still to come: every text section, and an honest notice."""
    st.title(page_title(page_id))
    for section in SECTIONS:
        if section == "lab":
            st.subheader(t("concept.section.lab"))
            st.info(t("concept.lab_pending", issue=issue))
            continue
        if section in ("picture", "seen"):
            continue  # these describe the interactive picture and lab results, which are not built yet
        concept_section(page_id, section)


def related_cards(match, title_key: str, unavailable_key: str, subheader: bool = False, limit: int = 12) -> None:
    """Links to the flashcards a concept page relates to (``match(card) -> bool``), opened with ``?card=``."""
    try:
        from app.study.cards import load_deck

        cards = [c for c in load_deck().cards.values() if match(c)]
    except (OSError, ValueError) as err:
        st.warning(t(unavailable_key, error=str(err)))
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
    """The first ``limit`` questions of content/cards/<topic>.yaml under a subheader, each opened with ``?card=``."""
    path = ROOT / "content" / "cards" / f"{topic}.yaml"
    cards = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("cards", []) if path.exists() else []
    st.subheader(t(title_key))
    for card in cards[:limit]:
        text = (card.get(lang()) or card.get("en") or {}).get("q", card["id"])
        st.markdown(f"- [{text}](/flashcards?card={card['id']})")
