"""The notes-errata page in both languages, its filter, and the calculator opened by one of its links."""
import re
from urllib.parse import parse_qsl

import pytest

from labs import errata
from tests.app.conftest import app_page, metric


def _markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


@pytest.mark.parametrize("lang,title,filter_label", [("en", "Notes errata", "Only what is wrong"),
                                                     ("zh", "笔记勘误", "只看错误")])
def test_page_lists_every_claim_and_filters_to_wrong_and_simplified(lang, title, filter_label):
    claims = errata.claims()
    counts = errata.counts(claims)
    at = app_page("notes_errata", lang).run()
    assert not at.exception, at.exception
    assert at.title[0].value == title
    assert len(at.expander) == len(claims) >= 40
    md = _markdown(at)
    for verdict, n in counts.items():               # overall and per-section badges come from the register
        assert f"{n} {errata_label(at, verdict)}" in md
    toggle = at.toggle(key="errata_only_wrong")
    assert toggle.label.startswith(filter_label)
    toggle.set_value(True).run()
    assert not at.exception
    assert len(at.expander) == counts["wrong"] + counts["simplified"]
    shown = [e.label for e in at.expander]
    wrong = next(c for c in claims if c["verdict"] == "wrong")
    held = next(c for c in claims if c["verdict"] == "holds")
    assert any(wrong["claim"][lang] in s for s in shown) and not any(held["claim"][lang] in s for s in shown)
    if lang == "en":                                 # the filtered read still carries its evidence links
        assert "/calculator?model=llama-2-7b&method=full" in _markdown(at)
        assert "/decision-guide?lab=compare&task=facts&steps=150" in _markdown(at)


def errata_label(at, verdict: str) -> str:
    from app.i18n import _strings
    return _strings()[f"errata.verdict.{verdict}"][at.session_state["lang"]]


def test_an_evidence_link_opens_the_calculator_with_its_inputs():
    at = app_page("notes_errata", "en").run()
    links = re.findall(r"\(/(calculator\?[^)]*)\)", _markdown(at))
    link = next(u for u in links if "llama-65b" in u and "offload=1" in u)   # QLoRA 65B on 48 GB, paged
    claim = next(c for c in errata.claims() if c["id"] == "s3-65b-on-48gb")
    calc = app_page("calculator", "en")
    for k, v in parse_qsl(link.split("?", 1)[1]):
        calc.query_params[k] = v
    calc.run()
    assert not calc.exception, calc.exception
    assert calc.selectbox(key="calc_model").value == "llama-65b"
    assert calc.selectbox(key="calc_method").value == "qlora"
    assert calc.number_input(key="calc_rank").value == 64
    assert metric(calc, "Per GPU") == f"{claim['evidence'][0]['value']:.2f} GB"   # the register's figure


def test_a_bad_link_value_is_named_and_ignored():
    calc = app_page("calculator", "en")
    calc.query_params.update({"model": "llama-2-13b", "rank": "99999"})
    calc.run()
    assert not calc.exception
    assert calc.selectbox(key="calc_model").value == "llama-2-13b"
    assert calc.number_input(key="calc_rank").value == 16
    assert any("rank = '99999'" in w.value and "1..4096" in w.value for w in calc.warning)


def test_a_lab_link_opens_the_compare_panel_with_the_saved_runs_settings(data_dir):
    e = next(e for c in errata.claims() for e in c["evidence"] if e["kind"] == "lab")
    params = errata.lab_params(e)
    assert params["steps"] == errata.saved_run(e["run"])["config"]["steps"]
    at = app_page("decision_guide", "en")
    at.query_params.update({"lab": "compare", **{k: str(v) for k, v in params.items()}})
    at.run()
    assert not at.exception, at.exception
    assert at.number_input(key="compare.steps").value == params["steps"]
    assert at.number_input(key="compare.latency_repeats").value == params["latency_repeats"]


def test_only_wrong_in_the_url_opens_the_filtered_read():
    counts = errata.counts(errata.claims())
    at = app_page("notes_errata", "zh")
    at.query_params["only"] = "wrong"
    at.run()
    assert not at.exception and at.toggle(key="errata_only_wrong").value is True
    assert len(at.expander) == counts["wrong"] + counts["simplified"]
