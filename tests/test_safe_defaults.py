"""Safe defaults: localhost binding, upload cap, model folders confined, no pickle, no raw HTML."""
import os
import re
from pathlib import Path

import pytest

from labs.base import BASE_DIR, user_model_dir

ROOT = Path(__file__).resolve().parent.parent


def test_server_binds_to_localhost_and_caps_uploads():
    cfg = (ROOT / ".streamlit" / "config.toml").read_text()
    assert re.search(r'^address\s*=\s*"localhost"', cfg, re.M)
    cap = int(re.search(r"^maxUploadSize\s*=\s*(\d+)", cfg, re.M).group(1))
    assert 1 <= cap <= 5, "upload cap (MB) should be small: only config.json files and adapters are uploaded"
    make = (ROOT / "Makefile").read_text()
    assert "HOST ?= localhost" in make


@pytest.fixture
def models(tmp_path, monkeypatch):
    root = tmp_path / "models"
    (root / "good").mkdir(parents=True)
    (root / "good" / "config.json").write_text("{}")
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    os.symlink(outside, root / "escape")
    os.symlink(root / "good", root / "alias")
    monkeypatch.setenv("PEFTLAB_MODELS_DIR", str(root))
    return root


def test_model_folder_inside_root_is_allowed(models):
    assert user_model_dir("good") == (models / "good").resolve()
    assert user_model_dir("alias") == (models / "good").resolve()  # a link that stays inside is fine


@pytest.mark.parametrize("name", ["../secret", "/etc", "escape", "good/../../secret", "", str(BASE_DIR)])
def test_model_folder_escapes_are_refused(models, name):
    with pytest.raises(PermissionError, match="model path"):
        user_model_dir(name)


def test_model_folder_choice_disabled_without_root(monkeypatch):
    monkeypatch.delenv("PEFTLAB_MODELS_DIR", raising=False)
    with pytest.raises(PermissionError, match="PEFTLAB_MODELS_DIR"):
        user_model_dir("good")


def _sources():
    for folder in ("app", "labs", "peftlab_kernels"):
        yield from (ROOT / folder).rglob("*.py")


def test_no_pickle_anywhere():
    for path in _sources():
        text = path.read_text()
        assert not re.search(r"^\s*import pickle|^\s*from pickle|pickle\.load", text, re.M), path
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            assert "weights_only=True" in m.group(1), f"{path}: torch.load without weights_only=True"


def test_no_raw_html_in_pages():
    for path in (ROOT / "app").rglob("*.py"):
        assert "unsafe_allow_html=True" not in path.read_text(), f"{path} renders raw HTML"
