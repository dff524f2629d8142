"""Notes errata: every checkable claim of the interview notes, its verdict, the corrected statement and the evidence.

Data: content/notes/claims.yaml, read and recomputed by labs.errata (the tests fail when a number drifts from the
code). Each evidence links to where a learner sees it: the calculator with its inputs filled in, a lab panel with
the saved run's settings, a concept page, the flashcards that drill the correction. ``?only=wrong`` opens it
filtered to what is wrong or simplified (the decision guide links there).
"""
from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st

from app.calc_link import url as calc_url
from app.i18n import lang, page_title, pick, t
from labs import errata

BADGE = {"holds": "green", "condition": "blue", "simplified": "orange", "wrong": "red", "uncheckable": "gray"}
ICON = {"holds": "✅", "condition": "🔵", "simplified": "🟠", "wrong": "❌", "uncheckable": "⚪"}
FILTERED = errata.NEEDS_CARD          # "only what is wrong or simplified"
PAGE_ID = "notes-errata"


def value_text(v) -> str:
    """A register number as written: 4194304 -> 4,194,304; 0.373 -> 0.373; 86.0 -> 86."""
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:,.{errata.decimals(v)}f}"


def badges(counts: dict[str, int]) -> str:
    return " ".join(f":{BADGE[v]}-badge[{n} {t('errata.verdict.' + v)}]" for v, n in counts.items() if n)


def page_link(page_id: str, **query) -> str:
    q = urlencode({**query, "lang": lang()})
    return f"/{page_id}?{q}"


@st.cache_data(show_spinner=False)
def _card_questions(language: str) -> dict[str, str]:
    try:
        from app.study.cards import load_deck
        return {cid: c.q(language) for cid, c in load_deck().cards.items()}
    except (OSError, ValueError):           # a broken deck must not take this page down
        return {}


def evidence_line(e: dict) -> str:
    head = f"**{t('errata.kind.' + e['kind'])}**"
    note = pick(e["note"])
    if "value" in e:
        note = note.replace("{value}", value_text(e["value"]))
    line = f"{head}: {note}"
    if e["kind"] in errata.NUMERIC:
        line += f" · _{t('errata.recomputed')}_"
    if e["kind"] == "reference":
        cite = f"[{e['cite']}]({e['url']})" if e.get("url") else e["cite"]
        line += f" — {cite}"
    if e["kind"] == "test":
        line += f" — `{e['test']}` ({t('errata.test')})"
    if e["kind"] == "lab":
        line += " — " + t("errata.run", date=e["date"][:10], device=e["device"], torch=e["torch"])
    inputs = errata.calculator_inputs(e)
    if inputs:
        line += f" → [{t('errata.open_calc')}](/{calc_url(inputs, lang=lang())})"
    if e["kind"] == "lab":
        params = errata.lab_params(e)
        line += f" → [{t('errata.open_lab', lab=e['lab'])}]({page_link(e['page'], lab=e['lab'], **params)})"
    return line


def claim_block(c: dict, cards: dict[str, str]) -> None:
    verdict = c["verdict"]
    label = f"{ICON[verdict]} {pick(c['claim'])} — {t('errata.verdict.' + verdict)}"
    with st.expander(label):
        where = f" · §{c.get('where') or c['section']}"
        st.markdown(f"**{t('errata.claim')}**{where}: {pick(c['claim'])}")
        st.markdown(f"**{t('errata.correction')}** :{BADGE[verdict]}-badge[{t('errata.verdict.' + verdict)}]: "
                    f"{pick(c['correction'])}")
        st.markdown(f"**{t('errata.evidence')}**")
        st.markdown("\n".join(f"- {evidence_line(e)}" for e in c["evidence"]))
        links = []
        if c.get("page"):
            links.append(f"[{t('errata.open_page', page=page_title(c['page']))}]({page_link(c['page'])})")
        if links:
            st.markdown(" · ".join(links))
        drill = [cid for cid in c.get("cards", []) if cid in cards]
        if drill:
            st.markdown(f"**{t('errata.cards')}**")
            st.markdown("\n".join(f"- [{cards[cid]}](/flashcards?card={cid})" for cid in drill))


def main() -> None:
    data = errata.register()
    claims = data["claims"]
    st.title(page_title(PAGE_ID))
    st.markdown(t("errata.intro"))
    st.markdown(t("errata.totals", n=len(claims), s=len(data["sections"])) + " · " + badges(errata.counts(claims)))
    only = st.toggle(t("errata.filter"), key="errata_only_wrong", value=st.query_params.get("only") == "wrong")
    shown = [c for c in claims if not only or c["verdict"] in FILTERED]
    st.caption(t("errata.shown", n=len(shown)))
    cards = _card_questions(lang())
    for num, section in data["sections"].items():
        in_section = [c for c in claims if str(c["section"]) == num]
        visible = [c for c in shown if str(c["section"]) == num]
        if not visible:
            continue
        st.subheader(t("errata.section", num=num, title=pick(section["title"])))
        st.markdown(badges(errata.counts(in_section)))
        for c in visible:
            claim_block(c, cards)
    if not shown:
        st.info(t("errata.none"))


main()
