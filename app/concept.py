"""The concept-page template: every concept page is the same walk through its topic, in this order,

    title (content/pages/index.yaml) → why → math (+ one display equation) → picture → lab → seen → interview → cards

and a topic file (app/pages/<topic>.py) brings only what is its own: the interactive `picture()`, the
`render_result(run)` of its lab, and a `Concept(...)` that says where they go:

    render(Concept("dora", picture, labs=[("dora", render_result)], equation=r"W' = m …",
                   cards=lambda: topic_cards("dora", "dora.cards")))

The picture section has one of three layouts: "beside" (the picture left, its text right), "below" (the picture,
then its text) or "own" (the picture places its text itself, e.g. inside one of its columns). When the bundled base
model cannot be loaded, the picture shows one error naming the reason instead of a traceback (`BASE_ERRORS`); the
model is loaded once per server (`base_model`, `base_linears`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import streamlit as st

from app.i18n import page_title, t
from app.labview import lab_panel
from app.ui import concept_section

# what loading the bundled base can raise when it is missing or broken (labs.base.load_base, labs.hf)
BASE_ERRORS = (FileNotFoundError, OSError, ValueError, ImportError)
LAYOUTS = ("beside", "below", "own")


@dataclass
class Concept:
    page: str                                           # the id in content/pages/index.yaml
    picture: Callable[[], None] | None = None           # the "see it instantly" widgets
    layout: str = "below"                               # where the picture section's text goes: LAYOUTS
    equation: str | None = None                         # LaTeX shown after the math text
    labs: Sequence = ()                                 # (lab id, render_result) pairs, or callables, in order
    cards: Callable[[], None] | None = None             # the closing block after the interview section
    errors: tuple[type[BaseException], ...] = field(default=BASE_ERRORS)

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout = {self.layout!r} is not allowed: one of {', '.join(LAYOUTS)}")


@st.cache_resource(show_spinner=False)
def base_model():
    """(model, tokenizer) of the bundled base (labs.base.load_base), once per server process."""
    from labs.base import load_base

    return load_base()


@st.cache_resource(show_spinner=False)
def base_linears() -> dict:
    """{module name: W (out, in)} of every decoder linear of the bundled base (the output head excluded)."""
    from torch import nn

    model, _ = base_model()
    head = model.get_output_embeddings()
    return {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head}


def result_view(*keys: str, empty: str) -> Callable:
    """Decorate `draw(res, run)` into the `render_result(run)` a lab panel calls: a run whose result lacks any of
    `keys` (an old or failed run) shows `st.info(t(empty))` and nothing else."""
    def wrap(draw: Callable) -> Callable:
        def render_result(run) -> None:
            res = run.result or {}
            if not all(res.get(k) for k in keys):
                st.info(t(empty))
                return
            draw(res, run)

        render_result.__doc__ = draw.__doc__
        return render_result

    return wrap


def _picture(spec: Concept) -> None:
    def draw() -> None:
        try:
            spec.picture()
        except spec.errors as err:                       # no bundled model (or a broken one): say why, no traceback
            st.error(t("concept.picture_error", error=str(err)))

    st.subheader(t("concept.section.picture"))
    if spec.layout == "beside":
        left, right = st.columns([3, 2])
        with right:
            concept_section(spec.page, "picture", header=False)
        with left:
            draw()
        return
    draw()
    if spec.layout == "below":
        concept_section(spec.page, "picture", header=False)


def render(spec: Concept) -> None:
    """The whole page, in the template's order."""
    st.title(page_title(spec.page))
    concept_section(spec.page, "why")
    concept_section(spec.page, "math")
    if spec.equation:
        st.latex(spec.equation)
    if spec.picture is not None:
        _picture(spec)
    concept_section(spec.page, "lab")
    for lab in spec.labs:
        if callable(lab):
            lab()
        else:
            lab_id, render_result = lab
            lab_panel(lab_id, render_result=render_result)
    concept_section(spec.page, "seen")
    concept_section(spec.page, "interview")
    if spec.cards is not None:
        spec.cards()
