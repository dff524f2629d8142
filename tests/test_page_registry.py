"""The page contract over content/pages/index.yaml: every page file is registered, every registered page resolves
(file, section, labs, card topics, prose) and a mistyped entry fails loudly, naming the page and the field."""
import copy
from pathlib import Path

import pytest
import yaml

from app import page_registry
from app.page_registry import PageIndexError, parse
from labs.experiments import MODULES as LAB_MODULES

ROOT = Path(__file__).resolve().parent.parent
RAW = yaml.safe_load(page_registry.INDEX.read_text(encoding="utf-8"))


def test_every_page_file_is_registered_once():
    files = sorted(p.name for p in page_registry.PAGES_DIR.glob("*.py"))
    registered = [p.file for p in page_registry.load().pages.values() if p.section]
    assert sorted(registered) == files, set(files) ^ set(registered)


def test_registry_resolves():
    idx = page_registry.load()
    for p in idx.pages.values():
        assert set(p.labs) <= set(LAB_MODULES), (p.id, set(p.labs) - set(LAB_MODULES))
        for topic in p.card_topics:
            assert (ROOT / "content" / "cards" / f"{topic}.yaml").is_file(), (p.id, topic)
        if p.prose:
            for section in idx.sections:
                for lang in page_registry.LANGS:
                    assert (ROOT / "content" / "pages" / p.id / f"{section}.{lang}.md").is_file(), (p.id, section)
        if p.section:  # the page heads itself with its registry title, not a copy in content/ui*.yaml
            assert 't("page.' not in p.path.read_text(encoding="utf-8"), p.file
    assert set(idx.topics) == {t for p in idx.pages.values() for t in p.card_topics}, "a topic no page lists"
    assert [pick for _, pick in idx.nav] and all(idx.in_section(s) for s, _ in idx.nav), "an empty nav section"


def _with(edit) -> dict:
    data = copy.deepcopy(RAW)
    edit(data)
    return data


def _page(data, pid):
    return next(p for p in data["pages"] if p["id"] == pid)


@pytest.mark.parametrize("edit, field", [
    (lambda d: _page(d, "lora").update(section="concept"), "section"),
    (lambda d: _page(d, "lora").update(file="loar.py"), "file"),
    (lambda d: _page(d, "lora").update(title={"en": "LoRA"}), "title"),
    (lambda d: _page(d, "lora").update(setcion="concepts"), "setcion"),
    (lambda d: _page(d, "lora").update(order="first"), "order"),
    (lambda d: _page(d, "lora").update(icon=""), "icon"),
    (lambda d: _page(d, "lora").update(card_topics=["lora", "loar"]), "card_topics"),
    (lambda d: _page(d, "nf4").update(order=_page(d, "lora")["order"]), "order"),
    (lambda d: d["pages"].append(copy.deepcopy(_page(d, "quiz"))), "id"),
])
def test_a_mistyped_entry_fails_loudly(edit, field):
    with pytest.raises(PageIndexError, match=f"field {field}: "):
        parse(_with(edit))


def test_navigation_is_built_from_the_registry(monkeypatch):
    """app.main.build_navigation turns every registered sidebar page into an st.Page, in registry order."""
    import app.main as main

    made = []
    monkeypatch.setattr(main.st, "Page", lambda path, **kw: made.append((Path(path).name, kw)) or kw["url_path"])
    nav = main.build_navigation()
    expected = [p for _, pages in page_registry.nav() for p in pages]
    assert [u for items in nav.values() for u in items] == [p.url for p in expected]
    assert [f for f, _ in made] == [p.file for p in expected]
    assert [kw["default"] for _, kw in made].count(True) == 1 and made[0][1]["default"]
