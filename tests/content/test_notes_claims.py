"""The notes errata register (content/notes/claims.yaml): coverage, schema, and every number recomputed by our code.

A register number is never trusted: labs.errata.check() recomputes each calculator figure (labs.budget), each
parameter count or scaling (labs.methods on the preset's shapes), each NF4 figure (peftlab_kernels) and each lab
figure (the saved run the pages quote) and compares it at the precision the register writes it with.
"""
import copy
from urllib.parse import parse_qsl

import pytest

from app import calc_link
from labs import errata


@pytest.fixture(scope="module")
def data():
    return errata.load()


def _first(data, kind, **match):
    for c in data["claims"]:
        for i, e in enumerate(c["evidence"]):
            if e["kind"] == kind and all(e.get(k) == v for k, v in match.items()):
                return c, i
    raise AssertionError(f"no {kind} evidence matching {match}")


def test_register_covers_every_section_with_verdicts_and_evidence(data):
    claims = data["claims"]
    assert len(claims) >= 40
    assert {c["section"] for c in claims} == set(errata.SECTIONS)
    assert all(c["verdict"] in errata.VERDICTS and c["evidence"] for c in claims)
    counts = errata.counts(claims)
    assert counts["wrong"] and counts["simplified"] and counts["holds"]
    numeric = [e for c in claims for e in c["evidence"] if e["kind"] in errata.NUMERIC]
    assert len(numeric) >= 40 and {e["kind"] for e in numeric} == set(errata.NUMERIC)


def test_every_register_number_is_what_the_code_computes(data):
    assert errata.check(data) == []


@pytest.mark.parametrize("kind,match", [
    ("calculator", {}), ("methods", {"measure": "trainable"}), ("methods", {"measure": "scaling"}),
    ("kernels", {}), ("lab", {}),
])
def test_an_edited_register_number_fails(data, kind, match):
    edited = copy.deepcopy(data)
    claim, i = _first(edited, kind, **match)
    e = claim["evidence"][i]
    v = e["value"]
    e["value"] = v + 1 if isinstance(v, int) else round(v * 1.05 + 10 ** -errata.decimals(v), errata.decimals(v))
    bad = [m for m in errata.check(edited) if isinstance(m, errata.Mismatch)]
    assert [(m.claim, m.index) for m in bad] == [(claim["id"], i)]
    assert claim["id"] in str(bad[0]) and repr(e["value"]) in str(bad[0])


def test_a_lab_figure_keeps_its_run_device_and_version(data):
    edited = copy.deepcopy(data)
    claim, i = _first(edited, "lab")
    edited["claims"][edited["claims"].index(claim)]["evidence"][i]["torch"] = "2.0.0"
    problems = [p for p in errata.check(edited) if isinstance(p, str)]
    assert len(problems) == 1 and claim["id"] in problems[0] and "saved run" in problems[0]


def test_a_renamed_test_evidence_fails(data):
    edited = copy.deepcopy(data)
    claim, i = _first(edited, "test")
    claim["evidence"][i]["test"] += "_gone"
    assert any(isinstance(p, str) and "no test" in p for p in errata.check(edited))


def test_precision_rule():
    assert errata.decimals(114.1) == 1 and errata.decimals(0.373) == 3 and errata.decimals(86.0) == 0
    assert errata.agrees(114.1, 114.146951) and not errata.agrees(114.1, 114.16)
    assert errata.agrees(4194304, 4194304.0) and not errata.agrees(4194304, 4194305.0)
    assert errata.agrees(0.0012, 0.0012157) and not errata.agrees(0.0012, 0.00126)


def test_wrong_and_simplified_claims_are_drilled_by_cards_of_their_section(data):
    from app.study.cards import load_deck
    deck = load_deck().cards
    for c in data["claims"]:
        if c["verdict"] not in errata.NEEDS_CARD:
            continue
        ids = c.get("cards") or []
        assert ids and all(cid in deck for cid in ids), (c["id"], ids)
        sections = {deck[cid].seed.split(".")[0] for cid in ids}
        assert c["section"] in sections, f"{c['id']}: no card tagged to section {c['section']} ({ids})"
        assert all(deck[cid].text[lg]["q"] for cid in ids for lg in ("en", "zh"))


def test_every_calculator_setting_round_trips_through_its_link(data):
    for c in data["claims"]:
        for e in c["evidence"]:
            inputs = errata.calculator_inputs(e)
            if inputs is None:
                continue
            values, errors = calc_link.parse(dict(parse_qsl(calc_link.url(inputs).split("?", 1)[1])))
            assert errors == [] and values == inputs, (c["id"], values, inputs)


@pytest.mark.parametrize("query,field", [
    ({"model": "llama-9000b"}, "model"), ({"rank": "0"}, "rank"), ({"rank": "sixteen"}, "rank"),
    ({"targets": "q_proj,wq"}, "targets"), ({"offload": "maybe"}, "offload"), ({"mfu": "0.9"}, "mfu"),
    ({"nf4_blocksize": "48"}, "nf4_blocksize"), ({"zero": "4"}, "zero"),
])
def test_calculator_link_rejects_each_bad_field_by_name(query, field):
    values, errors = calc_link.parse({**query, "method": "qlora"})
    assert values == {"method": "qlora"} and len(errors) == 1 and errors[0].startswith(f"{field} = ")
    assert "allowed" in errors[0]


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d["claims"][0].update(verdict="mostly"), "verdict"),
    (lambda d: d["claims"][0]["claim"].pop("zh"), "claim"),
    (lambda d: d["claims"][0].update(evidence=[]), "evidence"),
    (lambda d: d["claims"][0].update(cards=[]), "flashcard"),
    (lambda d: d["sections"].pop("7"), "sections"),
    (lambda d: d["claims"][0].update(where="3.1"), "where"),
])
def test_schema_errors_name_the_claim_and_field(data, mutate, match):
    bad = copy.deepcopy(data)
    mutate(bad)
    with pytest.raises(errata.ClaimError, match=match):
        errata._validate(bad)


def test_every_link_target_is_a_registered_page(data):
    from app import page_registry
    pages = page_registry.load().pages
    targets = {c["page"] for c in data["claims"]} | {s["page"] for s in data["sections"].values()}
    assert targets <= set(pages), targets - set(pages)
    for c in data["claims"]:
        for e in c["evidence"]:
            if e["kind"] == "lab":        # the lab link opens the page that runs this lab's panel
                assert e["lab"] in pages[e["page"]].labs, (c["id"], e["page"], e["lab"])
                assert errata.lab_params(e), c["id"]
