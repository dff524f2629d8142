"""Concept page: lora. Text from content/pages/lora/; the live lab lands with issue 5."""
from app.ui import concept_page_without_lab

concept_page_without_lab("lora", "page.lora", issue=5)
