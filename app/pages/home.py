"""Home: what PEFT Lab is, how to use it, and where the labs will run."""
from __future__ import annotations

import streamlit as st

from app.i18n import t
from app.ui import concept_section


@st.cache_resource(show_spinner=False)
def _device_line() -> str:
    from labs.device import describe  # torch import: once per server, not per rerun
    return describe()


st.title(t("home.title"))
st.markdown(t("home.intro"))
st.subheader(t("home.how_title"))
st.markdown(t("home.how"))
st.subheader(t("home.device_title"))
st.markdown(t("home.device", device=_device_line()))
st.subheader(t("home.why_title"))
concept_section("why-peft", "why", header=False)
