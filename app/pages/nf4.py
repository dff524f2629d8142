"""Concept page: nf4. Text from content/pages/nf4/; the live lab lands with issue 5."""
from app.ui import concept_page_without_lab

concept_page_without_lab("nf4", "page.nf4", issue=5)
