"""Shared by the page tests: a page in a language, a throwaway data folder for the lab engine and study store, runs
queued without a worker process, and finished runs stored the way the worker leaves them."""
import functools
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from labs import jobs

PAGES = Path(__file__).resolve().parents[2] / "app" / "pages"


@pytest.fixture()
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTLAB_DATA_DIR", str(tmp_path))
    return tmp_path


def app_page(name: str, lang: str = "en", timeout: float = 120) -> AppTest:
    """app/pages/<name>.py in ``lang``, not yet run."""
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=timeout)
    at.session_state["lang"] = lang
    return at


def metric(at: AppTest, prefix: str) -> str:
    """The value of the first metric whose label starts with ``prefix``."""
    return next(m.value for m in at.metric if m.label.startswith(prefix))


@pytest.fixture()
def no_worker(monkeypatch):
    """A start button queues its run but spawns no worker process (no training in the page tests)."""
    monkeypatch.setattr(jobs, "submit", functools.partial(jobs.submit, spawn=False))


def click_start(at: AppTest, lab: str) -> list[jobs.Run]:
    """Press the page's start button for ``lab``; the runs of ``lab`` in the store afterwards, newest first."""
    at.button(key=f"start.{lab}").click().run()
    assert not at.exception, at.exception
    return jobs.list_runs(lab)


def finished_run(lab: str, params: dict, result: dict | None = None, quick: bool = False) -> tuple[int, dict]:
    """Store a run of ``lab`` as done with ``result`` (by default a real run of the lab on ``params``), as the
    worker would; (its id, the result)."""
    if result is None:
        from labs.experiments import run_lab

        result = run_lab(lab, params, quick=quick)
    rid = jobs.submit(lab, params, quick=quick, spawn=False)
    with jobs.connect() as con:
        con.execute("UPDATE runs SET status='done', started=?, finished=?, result=? WHERE id=?",
                    (1.0, 2.0, json.dumps(jobs._clean(result)), rid))
    return rid, result


def open_run(at: AppTest, rid: int) -> AppTest:
    """Run the page with ``?run=<rid>``, the link a finished run is opened with."""
    at.query_params["run"] = str(rid)
    return at.run()


def drawn_run(at: AppTest, lab: str, params: dict, result: dict | None = None, quick: bool = False):
    """A finished run of ``lab`` stored (see finished_run) and opened on the page ``at``: (the page, run id, result)."""
    rid, result = finished_run(lab, params, result, quick)
    open_run(at, rid)
    assert not at.exception, at.exception
    return at, rid, result
