"""The page registry: ``content/pages/index.yaml``, read at run time. One entry per page of the app.

    nav:    the sidebar sections, in order: {id, title: {en, zh}}
    topics: the flashcard topic ids, in the deck's canonical order
    pages:  {id, title: {en, zh}, section, order, icon, file, labs, card_topics, prose, ...}

``id`` is the page's URL path (``/lora``) and, with ``-`` → ``_``, its file under ``app/pages/`` unless ``file``
says otherwise. ``section`` names a ``nav`` id; a page without one is prose shown inside another page (``why-peft``
on Home). ``prose: true`` means ``content/pages/<id>/<section>.<lang>.md`` exist. ``labs`` are lab ids
(``labs.experiments``) the page runs; ``card_topics`` are topic ids of ``content/cards/<topic>.yaml``.

No Streamlit here: ``app.main`` builds the navigation from :func:`nav`, ``app.study.cards`` validates cards
against :func:`page_ids`, pages take their heading from :func:`title`. Any mistake (a missing field, an unknown
section, a file that is not there) raises :class:`PageIndexError` naming the page, the field and what is allowed.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
INDEX = ROOT / "content" / "pages" / "index.yaml"
PAGES_DIR = ROOT / "app" / "pages"
LANGS = ("en", "zh")
PAGE_ID = re.compile(r"^[a-z][a-z0-9-]*$")


class PageIndexError(ValueError):
    """content/pages/index.yaml is malformed; the message names the page, the field and what is allowed."""


@dataclass(frozen=True)
class Page:
    id: str
    title: dict                 # {en, zh}
    section: str | None         # a nav id; None: prose shown inside another page
    order: int
    icon: str
    file: str                   # under app/pages/ ("" when the page has no file of its own)
    labs: tuple[str, ...]
    card_topics: tuple[str, ...]
    prose: bool
    raw: dict                   # the entry as written (summary, seed_sections, …)

    @property
    def url(self) -> str:
        return self.id

    @property
    def path(self) -> Path:
        return PAGES_DIR / self.file


@dataclass(frozen=True)
class Index:
    nav: tuple[tuple[str, dict], ...]      # (section id, {en, zh}) in sidebar order
    topics: tuple[str, ...]
    sections: tuple[str, ...]              # prose sections of a concept page, in order
    pages: dict[str, Page]                 # in file order

    def in_section(self, section: str) -> list[Page]:
        return sorted((p for p in self.pages.values() if p.section == section), key=lambda p: p.order)


def _fail(where: str, field: str, msg: str) -> None:
    raise PageIndexError(f"{INDEX.relative_to(ROOT)}: {where}: field {field}: {msg}")


def _bilingual(v, where: str, field: str) -> dict:
    if not (isinstance(v, dict) and all(isinstance(v.get(lg), str) and v[lg].strip() for lg in LANGS)):
        _fail(where, field, f"{v!r:.80}: need {{en: ..., zh: ...}}, both non-empty")
    return {lg: v[lg].strip() for lg in LANGS}


def _ids(v, where: str, field: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not (isinstance(v, list) and all(isinstance(x, str) and PAGE_ID.match(x) for x in v)):
        _fail(where, field, f"{v!r:.80}: need a list of ids such as [lora, full-ft]")
    return tuple(v)


def _page(raw, nav_ids: tuple[str, ...], topics: tuple[str, ...], i: int) -> Page:
    if not isinstance(raw, dict):
        _fail(f"pages[{i}]", "pages[]", f"{raw!r:.60}: each page is a map")
    pid = raw.get("id")
    if not (isinstance(pid, str) and PAGE_ID.match(pid)):
        _fail(f"pages[{i}]", "id", f"{pid!r}: need lowercase letters, digits and '-' (it is the URL path)")
    where = f"page {pid}"
    known = {"id", "title", "section", "order", "icon", "file", "labs", "card_topics", "prose", "summary",
             "seed_sections"}
    extra = sorted(set(raw) - known)
    if extra:
        _fail(where, extra[0], f"unknown field: allowed {', '.join(sorted(known))}")
    title = _bilingual(raw.get("title"), where, "title")
    section = raw.get("section")
    if section is not None and section not in nav_ids:
        _fail(where, "section", f"{section!r}: allowed one of {', '.join(nav_ids)} (or none: prose only)")
    order = raw.get("order", 0)
    if isinstance(order, bool) or not isinstance(order, int):
        _fail(where, "order", f"{order!r}: need an integer (sidebar position within the section)")
    icon = raw.get("icon", "")
    file = raw.get("file", f"{pid.replace('-', '_')}.py" if section else "")
    if section is not None:
        if not (isinstance(icon, str) and icon.strip()):
            _fail(where, "icon", f"{icon!r}: a page in the sidebar needs an icon (one emoji)")
        if not (isinstance(file, str) and (PAGES_DIR / file).is_file()):
            _fail(where, "file", f"{file!r}: no such file under app/pages/")
    prose = raw.get("prose", False)
    if not isinstance(prose, bool):
        _fail(where, "prose", f"{prose!r}: true or false")
    if prose and not (INDEX.parent / pid).is_dir():
        _fail(where, "prose", f"true but content/pages/{pid}/ does not exist")
    card_topics = _ids(raw.get("card_topics"), where, "card_topics")
    bad = [c for c in card_topics if c not in topics]
    if bad:
        _fail(where, "card_topics", f"{bad[0]!r} is not in topics: allowed {', '.join(topics)}")
    return Page(pid, title, section, order, icon, file, _ids(raw.get("labs"), where, "labs"), card_topics,
                prose, raw)


def parse(data) -> Index:
    """Validate the parsed YAML of index.yaml into an :class:`Index`."""
    if not isinstance(data, dict):
        _fail("top level", "(file)", "need a map with nav, topics, sections and pages")
    nav_raw = data.get("nav")
    if not (isinstance(nav_raw, list) and nav_raw):
        _fail("top level", "nav", "need a non-empty list of {id, title}")
    nav = tuple((n.get("id"), _bilingual(n.get("title"), f"nav {n.get('id')}", "title")) for n in nav_raw)
    nav_ids = tuple(n for n, _ in nav)
    topics = _ids(data.get("topics"), "top level", "topics")
    sections = _ids(data.get("sections"), "top level", "sections")
    pages: dict[str, Page] = {}
    for i, raw in enumerate(data.get("pages") or []):
        p = _page(raw, nav_ids, topics, i)
        if p.id in pages:
            _fail(f"page {p.id}", "id", "duplicate id: each page is listed once")
        pages[p.id] = p
    for sid in nav_ids:
        orders = [p.order for p in pages.values() if p.section == sid]
        if len(orders) != len(set(orders)):
            _fail(f"nav {sid}", "order", f"two pages share an order in section {sid}: {sorted(orders)}")
    return Index(nav, topics, sections, pages)


@functools.lru_cache(maxsize=1)
def load() -> Index:
    """The validated registry (read once per process)."""
    return parse(yaml.safe_load(INDEX.read_text(encoding="utf-8")))


def page_ids() -> tuple[str, ...]:
    return tuple(load().pages)


def get(page_id: str) -> Page:
    pages = load().pages
    if page_id not in pages:
        raise KeyError(f"page = {page_id!r} is not in {INDEX.relative_to(ROOT)}: allowed {', '.join(pages)}")
    return pages[page_id]


def nav() -> list[tuple[dict, list[Page]]]:
    """[(section title {en, zh}, pages in sidebar order)] for every section with at least one page."""
    idx = load()
    return [(t, idx.in_section(sid)) for sid, t in idx.nav if idx.in_section(sid)]
