"""Concept page: adapters. Text from content/pages/adapters/; the live lab lands with issue 6."""
from app.ui import concept_page_without_lab

concept_page_without_lab("adapters", "page.adapters", issue=6)
