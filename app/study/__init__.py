"""Study mode without the UI: cards, FSRS scheduling, the SQLite store, Anki export, progress numbers.

Nothing in this package imports Streamlit except ``widgets.py``, which only the pages import::

    content/cards/*.yaml ─┐
    content/interview/    ├─ cards.py ──► srs.py (fsrs) ──► store.py (SQLite, WAL) ──► progress.py
                          └─────────────► anki.py (genanki .apkg)
"""
