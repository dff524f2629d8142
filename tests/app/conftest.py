"""Shared by the page tests: a throwaway data folder for the lab engine and study store."""
import pytest


@pytest.fixture()
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTLAB_DATA_DIR", str(tmp_path))
    return tmp_path
