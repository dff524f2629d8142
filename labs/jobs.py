"""The lab engine: runs labs in worker processes, one at a time per device, persisted in SQLite.

    app / CLI ──submit()──► runs table (queued) ──► supervisor process (detached, one per run)
                                                     │ waits its turn: oldest queued run, device free
                                                     │ spawns the worker, enforces the time limit,
                                                     │ records how the worker ended (exit code / signal)
                                                     ▼
                                              worker process: run_lab(..., emit → events table,
                                                              should_stop ← cancel flag)

Everything a page shows comes from the database, so a reload or a second tab re-attaches to a
running job, and a server restart loses nothing: supervisors are detached from the server.
A worker killed by a signal or the OOM killer, a lab that raises, and a lab over its time limit
each end with ``status = failed`` and the real reason in ``error``. Database: ``$PEFTLAB_DATA_DIR``
(default ``./data``), file ``labs.sqlite3``, WAL mode.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ACTIVE = ("queued", "running")
DEFAULT_TIME_LIMIT = 15 * 60  # seconds a worker may run before the supervisor stops it

SCHEMA = [
    # version 1
    """CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, lab TEXT NOT NULL, params TEXT NOT NULL, quick INTEGER NOT NULL,
        device TEXT NOT NULL, status TEXT NOT NULL, created REAL NOT NULL, started REAL, finished REAL,
        supervisor_pid INTEGER, worker_pid INTEGER, cancel INTEGER NOT NULL DEFAULT 0, error TEXT,
        result TEXT, time_limit REAL NOT NULL, label TEXT);
    CREATE TABLE events (run_id INTEGER NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, type TEXT NOT NULL,
        data TEXT NOT NULL, PRIMARY KEY (run_id, seq));
    CREATE INDEX runs_status ON runs(status, device, id);""",
]


def data_dir() -> Path:
    path = Path(os.environ.get("PEFTLAB_DATA_DIR") or ROOT / "data")
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_path() -> Path:
    return data_dir() / "labs.sqlite3"


def run_dir(run_id: int) -> Path:
    path = data_dir() / "runs" / str(int(run_id))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def connect():
    con = sqlite3.connect(db_path(), timeout=30, isolation_level=None)
    try:
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA busy_timeout=30000")
        _migrate(con)
        yield con
    finally:
        con.close()


def _migrate(con: sqlite3.Connection) -> None:
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version >= len(SCHEMA):
        return
    con.execute("BEGIN IMMEDIATE")
    version = con.execute("PRAGMA user_version").fetchone()[0]
    for i in range(version, len(SCHEMA)):
        for stmt in filter(str.strip, SCHEMA[i].split(";")):
            con.execute(stmt)
    con.execute(f"PRAGMA user_version = {len(SCHEMA)}")
    con.execute("COMMIT")


@dataclass
class Run:
    id: int
    lab: str
    params: dict
    quick: bool
    device: str
    status: str
    created: float
    started: float | None
    finished: float | None
    error: str | None
    result: dict | None
    label: str | None
    cancel: bool
    position: int = 0  # 1 = next to start; 0 = not queued

    @classmethod
    def from_row(cls, row: sqlite3.Row, position: int = 0) -> "Run":
        return cls(id=row["id"], lab=row["lab"], params=json.loads(row["params"]), quick=bool(row["quick"]),
                   device=row["device"], status=row["status"], created=row["created"], started=row["started"],
                   finished=row["finished"], error=row["error"],
                   result=json.loads(row["result"]) if row["result"] else None, label=row["label"],
                   cancel=bool(row["cancel"]), position=position)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


# ── submitting and reading ────────────────────────────────────────────────────────────────────


def submit(lab_id: str, params: dict, quick: bool = False, device: str | None = None,
           time_limit: float = DEFAULT_TIME_LIMIT, label: str | None = None, spawn: bool = True) -> int:
    """Validate, queue, and start a supervisor for the run. Raises ParamError/KeyError on bad input."""
    from labs.device import pick_device
    from labs.experiments import get_lab

    dev = pick_device(device).type
    checked = get_lab(lab_id).validate(params, quick=quick, on_gpu=dev == "cuda")
    with connect() as con:
        cur = con.execute(
            "INSERT INTO runs (lab, params, quick, device, status, created, time_limit, label) "
            "VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
            (lab_id, json.dumps(checked), int(quick), dev, time.time(), float(time_limit), label))
        run_id = cur.lastrowid
    if spawn:
        proc = subprocess.Popen([sys.executable, "-m", "labs.jobs", "supervise", str(run_id)], cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=open(run_dir(run_id) / "supervisor.log", "ab"))
        with connect() as con:
            con.execute("UPDATE runs SET supervisor_pid=? WHERE id=?", (proc.pid, run_id))
    return run_id


def reap() -> None:
    """Mark runs whose supervisor vanished (machine reboot, kill -9 of the supervisor) as failed."""
    with connect() as con:
        rows = con.execute("SELECT id, supervisor_pid, worker_pid, status FROM runs WHERE status IN "
                           "('queued','running') AND supervisor_pid IS NOT NULL").fetchall()
        for r in rows:
            if not _alive(r["supervisor_pid"]) and not _alive(r["worker_pid"]):
                _finish(con, r["id"], "failed", error="the lab's supervisor process disappeared "
                        "(server machine restarted or the process was killed)")


def get_run(run_id: int) -> Run | None:
    reap()
    with connect() as con:
        row = con.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if row is None:
            return None
        return Run.from_row(row, _position(con, row))


def _position(con, row) -> int:
    if row["status"] != "queued":
        return 0
    ahead = con.execute("SELECT COUNT(*) FROM runs WHERE device=? AND status IN ('queued','running') AND id<?",
                        (row["device"], row["id"])).fetchone()[0]
    return ahead + 1


def list_runs(lab_id: str | None = None, limit: int = 50, statuses: tuple | None = None) -> list[Run]:
    reap()
    sql, args = "SELECT * FROM runs", []
    conds = []
    if lab_id:
        conds.append("lab=?")
        args.append(lab_id)
    if statuses:
        conds.append(f"status IN ({','.join('?' * len(statuses))})")
        args.extend(statuses)
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    sql += " ORDER BY id DESC LIMIT ?"
    args.append(limit)
    with connect() as con:
        return [Run.from_row(r, _position(con, r)) for r in con.execute(sql, args).fetchall()]


def events(run_id: int, after: int = 0, types: tuple | None = None) -> list[dict]:
    with connect() as con:
        sql = "SELECT seq, data FROM events WHERE run_id=? AND seq>?"
        args: list[Any] = [run_id, after]
        if types:
            sql += f" AND type IN ({','.join('?' * len(types))})"
            args.extend(types)
        return [{"seq": r["seq"], **json.loads(r["data"])} for r in con.execute(sql + " ORDER BY seq", args)]


def cancel(run_id: int) -> None:
    """Ask a run to stop. A queued run is cancelled at once; a running one within a step or two."""
    with connect() as con:
        con.execute("UPDATE runs SET cancel=1 WHERE id=? AND status IN ('queued','running')", (run_id,))
        con.execute("UPDATE runs SET status='cancelled', finished=?, error='cancelled before it started' "
                    "WHERE id=? AND status='queued'", (time.time(), run_id))


def _finish(con, run_id: int, status: str, error: str | None = None, result: dict | None = None) -> None:
    con.execute("UPDATE runs SET status=?, finished=?, error=?, result=COALESCE(?, result) "
                "WHERE id=? AND status IN ('queued','running')",
                (status, time.time(), error, json.dumps(result) if result is not None else None, run_id))


# ── supervisor and worker (each its own process) ───────────────────────────────────────────────


def _claim_turn(run_id: int) -> str:
    """'go' when this run is the oldest queued one on a free device; else 'wait' or 'gone'."""
    with connect() as con:
        con.execute("BEGIN IMMEDIATE")
        try:
            row = con.execute("SELECT status, device, cancel FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None or row["status"] != "queued":
                return "gone"
            busy = con.execute("SELECT COUNT(*) FROM runs WHERE device=? AND status='running'",
                               (row["device"],)).fetchone()[0]
            oldest = con.execute("SELECT MIN(id) FROM runs WHERE device=? AND status='queued'",
                                 (row["device"],)).fetchone()[0]
            if busy == 0 and oldest == run_id:
                con.execute("UPDATE runs SET status='running', started=?, supervisor_pid=? WHERE id=?",
                            (time.time(), os.getpid(), run_id))
                return "go"
            return "wait"
        finally:
            con.execute("COMMIT")


def supervise(run_id: int, poll: float = 0.25, grace: float = 10.0) -> None:
    while (turn := _claim_turn(run_id)) == "wait":
        reap()  # a dead run must not block the queue
        time.sleep(poll)
    if turn == "gone":
        return
    log = open(run_dir(run_id) / "worker.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "labs.jobs", "work", str(run_id)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log)
    with connect() as con:
        con.execute("UPDATE runs SET worker_pid=? WHERE id=?", (proc.pid, run_id))
        limit = con.execute("SELECT time_limit FROM runs WHERE id=?", (run_id,)).fetchone()[0]
    t0, cancel_seen, why = time.time(), None, None
    while proc.poll() is None:
        time.sleep(poll)
        with connect() as con:
            cancelled = con.execute("SELECT cancel FROM runs WHERE id=?", (run_id,)).fetchone()[0]
        if cancelled and cancel_seen is None:
            cancel_seen = time.time()
        if time.time() - t0 > limit and why is None:
            why = f"the lab exceeded its time limit of {limit:.0f} s and was stopped"
            proc.terminate()
        elif cancel_seen and time.time() - cancel_seen > grace and why is None:
            why = "cancelled"
            proc.terminate()
        if why and time.time() - t0 > limit + grace:
            proc.kill()
    code = proc.returncode
    with connect() as con:
        row = con.execute("SELECT status FROM runs WHERE id=?", (run_id,)).fetchone()
        if row["status"] != "running":
            return  # the worker recorded its own outcome
        if why == "cancelled":
            _finish(con, run_id, "cancelled", error="cancelled (the worker was stopped)")
        elif why:
            _finish(con, run_id, "failed", error=why)
        elif code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            hint = " — the out-of-memory killer or a manual kill" if -code == signal.SIGKILL else ""
            _finish(con, run_id, "failed", error=f"the worker process was killed by {name}{hint}")
        else:
            tail = (run_dir(run_id) / "worker.log").read_text(errors="replace")[-600:]
            _finish(con, run_id, "failed", error=f"the worker exited with code {code} without a result: {tail}")


class _EventWriter:
    """Buffers step events and flushes at most every 0.3 s; other events are written at once."""

    def __init__(self, run_id: int):
        self.run_id, self.seq, self.buf, self.last = run_id, 0, [], 0.0

    def __call__(self, event: dict) -> None:
        self.seq += 1
        self.buf.append((self.run_id, self.seq, time.time(), str(event.get("type", "")),
                         json.dumps(_clean(event))))
        if event.get("type") != "step" or time.time() - self.last > 0.3:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            with connect() as con:
                con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", self.buf)
            self.buf, self.last = [], time.time()


class _StopFlag:
    def __init__(self, run_id: int):
        self.run_id, self.checked, self.value = run_id, 0.0, False

    def __call__(self) -> bool:
        if not self.value and time.time() - self.checked > 0.5:
            with connect() as con:
                self.value = bool(con.execute("SELECT cancel FROM runs WHERE id=?", (self.run_id,)).fetchone()[0])
            self.checked = time.time()
        return self.value


def _clean(obj):
    import math
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        return _clean(obj.item())
    return obj


def work(run_id: int) -> None:
    from labs.experiments import Context, run_lab
    from labs.params import ParamError
    from labs.train import Cancelled

    with connect() as con:
        row = con.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
    writer, stop = _EventWriter(run_id), _StopFlag(run_id)
    ctx = Context(emit=writer, should_stop=stop, device=row["device"], out_dir=str(run_dir(run_id)))
    status, error, result = "failed", None, None
    try:
        result = run_lab(row["lab"], json.loads(row["params"]), quick=bool(row["quick"]), ctx=ctx)
        result.pop("history", None)  # every step is already in the events table
        status = "done"
    except Cancelled as exc:
        status, error = "cancelled", str(exc)
    except ParamError as exc:
        error = f"{exc.field}: {exc}"
    except MemoryError:
        error = "the lab ran out of memory"
    except Exception as exc:  # the lab raised: record the message; the traceback goes to worker.log
        error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    writer.flush()
    with connect() as con:
        _finish(con, run_id, status, error=error, result=_clean(result) if result is not None else None)


if __name__ == "__main__":
    command, rid = sys.argv[1], int(sys.argv[2])
    {"supervise": supervise, "work": work}[command](rid)
