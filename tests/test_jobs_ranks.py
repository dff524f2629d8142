"""A lab that runs on several ranks (lab `fsdp`): one rank killed mid-run fails the run with that rank's message
within 60 s, every rank process is reaped, and the next queued run starts."""
import os
import signal
import time

import pytest

from labs import jobs


@pytest.fixture(autouse=True)
def fresh_db(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTLAB_DATA_DIR", str(tmp_path))


def wait(run_id, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        run = jobs.get_run(run_id)
        if run.status in ("done", "failed", "cancelled"):
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} still {jobs.get_run(run_id).status} after {timeout}s")


def test_killed_rank_fails_the_run_and_the_queue_moves_on():
    rid = jobs.submit("fsdp", {"methods": "lora", "steps": 400, "batch_size": 4, "world_size": 2, "r": 2})
    nxt = jobs.submit("selftest", {"steps": 3, "delay": 0.01})
    t0 = time.time()
    while not any(e["type"] == "step" for e in jobs.events(rid)):         # the ranks are training
        assert time.time() - t0 < 90 and jobs.get_run(rid).status in ("queued", "running"), jobs.get_run(rid).error
        time.sleep(0.1)
    pids = jobs.events(rid, types=("ranks",))[0]["pids"]
    assert all(jobs._alive(p) for p in pids)
    os.kill(pids[1], signal.SIGKILL)
    killed = time.time()
    run = wait(rid, timeout=60)
    assert time.time() - killed < 60
    assert run.status == "failed" and "rank 1 of 2" in run.error and "SIGKILL" in run.error, run.error
    assert not any(jobs._alive(p) for p in pids)                           # no rank left behind
    assert wait(nxt).status == "done"
