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

from app import page_registry  # noqa: E402
from app.i18n import language_switch, pick  # noqa: E402


def build_navigation() -> dict:
    """{section title: [st.Page]} from content/pages/index.yaml (app/page_registry.py), in its order; the first
    page of the first section opens by default."""
    nav = {}
    for section_title, pages in page_registry.nav():
        nav[pick(section_title)] = [st.Page(str(p.path), title=pick(p.title), icon=p.icon, url_path=p.url,
                                            default=not nav and i == 0) for i, p in enumerate(pages)]
    return nav


def main() -> None:
    st.set_page_config(page_title="PEFT Lab", page_icon="🧪", layout="wide")
    with st.sidebar:
        language_switch()
    page = st.navigation(build_navigation(), expanded=True)
    page.run()
    from app.ui import drill_links

    drill_links(page.url_path)     # a concept page ends with the coding drills that practise it (content/drills)


if __name__ == "__main__":
    main()
