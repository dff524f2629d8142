"""Concept page: adalora. Text from content/pages/adalora/; the live lab lands with issue 6."""
from app.ui import concept_page_without_lab

concept_page_without_lab("adalora", "page.adalora", issue=6)
