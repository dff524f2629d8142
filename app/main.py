"""PEFT Lab — the router. Every page is a plain script under app/pages/; this file only wires them.

Run with ``make run``, i.e. ``streamlit run streamlit_app.py`` (the repo-root entry that calls ``main()``).
Not ``streamlit run app/main.py``: a ``pages/`` folder beside the entry script switches Streamlit into its
legacy multipage mode, where a direct link such as /lora runs the page without this router (no
language switch, no navigation).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # so `import labs`, `import app` work under `streamlit run`
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app.i18n import language_switch, t  # noqa: E402

# (file under app/pages, UI-string key of its title, icon, url path). Order = the sidebar's order.
SECTIONS = {
    "nav.start": [("home.py", "page.home", "🏠", "home")],
    "nav.concepts": [
        ("lora.py", "page.lora", "🔧", "lora"),
        ("nf4.py", "page.nf4", "🔢", "nf4"),
        ("qlora.py", "page.qlora", "🧊", "qlora"),
        ("dora.py", "page.dora", "🧭", "dora"),
        ("adalora.py", "page.adalora", "✂️", "adalora"),
        ("soft_prompts.py", "page.soft_prompts", "💬", "soft-prompts"),
        ("adapters.py", "page.adapters", "🔌", "adapters"),
        ("serving.py", "page.serving", "🚀", "serving"),
    ],
    "nav.tools": [
        ("calculator.py", "page.calculator", "🧮", "calculator"),
        ("decision_guide.py", "page.decision_guide", "🧭", "decision-guide"),
    ],
    "nav.study": [
        ("flashcards.py", "page.flashcards", "🃏", "flashcards"),
        ("quiz.py", "page.quiz", "❓", "quiz"),
        ("interview.py", "page.interview", "🎤", "interview"),
        ("progress.py", "page.progress", "📈", "progress"),
    ],
}


def build_navigation() -> dict:
    pages_dir = Path(__file__).resolve().parent / "pages"
    nav = {}
    for section, entries in SECTIONS.items():
        items = [st.Page(str(pages_dir / f), title=t(key), icon=icon, url_path=url, default=(url == "home"))
                 for f, key, icon, url in entries if (pages_dir / f).exists()]
        if items:
            nav[t(section)] = items
    return nav


def main() -> None:
    st.set_page_config(page_title="PEFT Lab", page_icon="🧪", layout="wide")
    with st.sidebar:
        language_switch()
    st.navigation(build_navigation(), expanded=True).run()


if __name__ == "__main__":
    main()
