"""The page contract over content/pages/index.yaml: every lab a page lists has a working panel there. A value out
of its range shows an error naming the field (no traceback), and once it is back in range the start button
queues a run with the form's values: the lab's --quick defaults. (Each page's own tests check its picture and
how a finished run is drawn.)"""
from __future__ import annotations

import pytest

from app import page_registry
from labs.experiments import get_lab
from tests.app.conftest import app_page, click_start

PAGES = [p for p in page_registry.load().pages.values() if p.labs]


def _editable_int(lab, at):
    """The first integer parameter the page shows as its own number input (AdaLoRA fixes its schedule fields)."""
    keys = {n.key for n in at.number_input}
    return next(p for p in lab.params if p.kind == "int" and p.lo is not None and f"{lab.id}.{p.name}" in keys)


def test_every_lab_page_is_in_the_contract():
    assert {lab for p in PAGES for lab in p.labs} >= {"lora", "nf4", "qlora", "dora", "adalora", "soft-prompts",
                                                      "adapters", "serving", "compare"}


@pytest.mark.parametrize("page", PAGES, ids=[p.id for p in PAGES])
def test_bad_value_names_its_field_then_start_queues_the_form(page, data_dir, no_worker):
    at = app_page(page.path.stem).run()
    assert not at.exception, at.exception
    for lab_id in page.labs:
        lab = get_lab(lab_id)
        p = _editable_int(lab, at)
        good = at.number_input(key=f"{lab_id}.{p.name}").value
        at.number_input(key=f"{lab_id}.{p.name}").set_value(int(p.lo) - 1).run()
        assert not at.exception, at.exception
        assert any(p.name in e.value and "allowed" in e.value for e in at.error), [e.value for e in at.error]
        at.number_input(key=f"{lab_id}.{p.name}").set_value(good).run()
        runs = click_start(at, lab_id)
        assert len(runs) == 1 and runs[0].status == "queued", lab_id
        assert runs[0].params == lab.validate({}, quick=True)             # the form starts at the --quick values
