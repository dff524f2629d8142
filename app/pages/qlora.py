"""Concept page: qlora. Text from content/pages/qlora/; the live lab lands with issue 5."""
from app.ui import concept_page_without_lab

concept_page_without_lab("qlora", "page.qlora", issue=5)
