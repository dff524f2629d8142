"""Concept page: soft-prompts. Text from content/pages/soft-prompts/; the live lab lands with issue 6."""
from app.ui import concept_page_without_lab

concept_page_without_lab("soft-prompts", "page.soft_prompts", issue=6)
