"""The lab engine: worker processes, queue, persistence, cancel, and every way a worker can end."""
import os
import signal
import time

import pytest

from labs import jobs


@pytest.fixture(autouse=True)
def fresh_db(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTLAB_DATA_DIR", str(tmp_path))


def wait(run_id, statuses=("done", "failed", "cancelled"), timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        run = jobs.get_run(run_id)
        if run.status in statuses:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} still {jobs.get_run(run_id).status} after {timeout}s")


def test_run_completes_and_events_persist():
    rid = jobs.submit("selftest", {"steps": 10, "delay": 0.01})
    run = wait(rid)
    assert run.status == "done", run.error
    evs = jobs.events(rid)
    assert [e["type"] for e in evs].count("step") == 10
    assert [e["seq"] for e in evs] == sorted(e["seq"] for e in evs)
    assert run.result["final"]["eval_loss"] == pytest.approx(0.3679, abs=1e-3)


def test_lab_that_raises_is_failed_with_its_message():
    run = wait(jobs.submit("selftest", {"steps": 10, "fail": "raise", "fail_at": 3}))
    assert run.status == "failed" and "raised at step 3 on purpose" in run.error


def test_worker_that_exits_is_failed_with_its_code():
    run = wait(jobs.submit("selftest", {"steps": 10, "fail": "exit", "fail_at": 2}))
    assert run.status == "failed" and "code 3" in run.error


def test_killed_worker_is_failed_and_queue_moves_on():
    rid = jobs.submit("selftest", {"steps": 2000, "delay": 0.05})
    nxt = jobs.submit("selftest", {"steps": 3, "delay": 0.01})
    t0 = time.time()
    while not (jobs.get_run(rid).status == "running" and jobs.events(rid)):
        assert time.time() - t0 < 30
        time.sleep(0.1)
    assert jobs.get_run(nxt).status == "queued" and jobs.get_run(nxt).position == 2
    with jobs.connect() as con:
        pid = con.execute("SELECT worker_pid FROM runs WHERE id=?", (rid,)).fetchone()[0]
    os.kill(pid, signal.SIGKILL)
    run = wait(rid)
    assert run.status == "failed" and "SIGKILL" in run.error
    assert wait(nxt).status == "done"


def test_cancel_stops_a_running_lab_within_seconds():
    rid = jobs.submit("selftest", {"steps": 2000, "delay": 0.05})
    while not jobs.events(rid):
        time.sleep(0.1)
    t0 = time.time()
    jobs.cancel(rid)
    run = wait(rid)
    assert run.status == "cancelled" and time.time() - t0 < 5


def test_cancel_of_a_queued_run_is_immediate():
    first = jobs.submit("selftest", {"steps": 200, "delay": 0.05})
    second = jobs.submit("selftest", {"steps": 5})
    jobs.cancel(second)
    assert jobs.get_run(second).status == "cancelled"
    jobs.cancel(first)
    wait(first)


def test_time_limit_fails_the_run():
    run = wait(jobs.submit("selftest", {"steps": 1000, "delay": 0.05, "fail": "ignore-cancel"}, time_limit=1.5))
    assert run.status == "failed" and "time limit" in run.error


def test_supervisor_gone_is_reaped_as_failed():
    rid = jobs.submit("selftest", {"steps": 5}, spawn=False)
    with jobs.connect() as con:
        con.execute("UPDATE runs SET supervisor_pid=999999 WHERE id=?", (rid,))  # no such process
    run = jobs.get_run(rid)
    assert run.status == "failed" and "disappeared" in run.error


def test_bad_parameters_never_reach_the_queue():
    from labs.params import ParamError
    with pytest.raises(ParamError, match="steps"):
        jobs.submit("selftest", {"steps": 0})
    assert jobs.list_runs() == []


def test_server_killed_while_a_lab_runs_loses_nothing(tmp_path):
    """The process that submitted (the Streamlit server) dies; the detached supervisor finishes the run."""
    import subprocess
    import sys

    script = ("import time; from labs import jobs; rid = jobs.submit('selftest', {'steps': 30, 'delay': 0.05}); "
              "print(rid, flush=True); time.sleep(60)")
    server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=jobs.ROOT, env={**os.environ, "PYTHONPATH": str(jobs.ROOT)})
    rid = int(server.stdout.readline())
    while not jobs.events(rid):
        time.sleep(0.1)
    server.kill()                       # the "server" is gone mid-run
    server.wait()
    run = wait(rid)                     # a new server process (this test) re-attaches by id
    assert run.status == "done", run.error
    assert [e["type"] for e in jobs.events(rid)].count("step") == 30
    with jobs.connect() as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_two_tabs_starting_labs_at_once_queue_in_order():
    """Two submissions at the same moment: one runs, the other waits with its position, both finish."""
    import threading

    ids = []
    threads = [threading.Thread(target=lambda: ids.append(jobs.submit("selftest", {"steps": 10, "delay": 0.02})))
               for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    runs = [jobs.get_run(i) for i in sorted(ids)]
    assert sum(r.status == "running" for r in runs) <= 1
    done = [wait(i) for i in sorted(ids)]
    assert all(r.status == "done" for r in done)
    assert done[0].finished <= done[1].started + 1e-6, "the second run started before the first finished"
