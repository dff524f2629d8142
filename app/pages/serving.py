"""Concept page: serving. Text from content/pages/serving/; the live lab lands with issue 7."""
from app.ui import concept_page_without_lab

concept_page_without_lab("serving", "page.serving", issue=7)
