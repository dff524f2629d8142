"""Concept page: dora. Text from content/pages/dora/; the live lab lands with issue 6."""
from app.ui import concept_page_without_lab

concept_page_without_lab("dora", "page.dora", issue=6)
