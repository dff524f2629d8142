"""The study database: WAL + FULL sync, migrations, durability under SIGKILL, corruption, concurrency."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from app.study import srs
from app.study.store import DB_NAME, MIGRATIONS, SCHEMA_VERSION, Store, StoreCorrupt, StoreError, start_fresh

ROOT = Path(__file__).resolve().parents[2]


def _py(code: str, data: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "PEFTLAB_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_wal_and_full_sync_on_every_connection(data_dir):
    s = Store()
    assert s.path == data_dir / DB_NAME
    c = s.connect()
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert c.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert c.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    c.close()


def test_migrates_empty_file_to_latest(data_dir):
    s = Store()
    assert SCHEMA_VERSION >= 2 and s.version() == SCHEMA_VERSION
    assert s.profiles() == [(1, "default")]
    with s.tx(write=False) as c:
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"card_state", "review_log", "quiz_attempts", "wrong_queue", "interview_sessions", "settings"} <= tables
    assert Store().version() == SCHEMA_VERSION  # re-opening is a no-op


def test_migrates_v1_database_keeping_its_reviews(data_dir):
    data_dir.mkdir(parents=True)
    raw = sqlite3.connect(data_dir / DB_NAME)
    for stmt in MIGRATIONS[0]:
        raw.execute(stmt)
    raw.execute("PRAGMA user_version = 1")
    raw.execute("INSERT INTO review_log (profile_id, card_id, rating, state_before, reviewed_at, log_json) "
                "VALUES (1, 'lora-001', 3, 0, 1.0, '{}')")
    raw.commit()
    raw.close()
    s = Store()
    assert s.version() == SCHEMA_VERSION
    assert [r["card_id"] for r in s.reviews(1)] == ["lora-001"]
    s.set_setting(1, "desired_retention", "0.85")  # a v2 table works
    assert s.get_setting(1, "desired_retention") == "0.85"


def test_newer_schema_is_refused_with_a_clear_message(data_dir):
    Store()
    raw = sqlite3.connect(data_dir / DB_NAME)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 5}"):
        Store()


def test_review_survives_sigkill_right_after_review_returns(data_dir):
    proc = _py("""
        import sys, time
        from app.study.store import Store
        from app.study import srs
        s = Store(); pid = s.profile_id()
        r = srs.review(s, pid, "lora-001", 3)
        print("reviewed", r.card.due.isoformat(), flush=True)
        time.sleep(600)
    """, data_dir)
    line = proc.stdout.readline().split()
    assert line and line[0] == "reviewed", proc.stderr.read()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    s = Store()
    rows = s.reviews(1)
    assert [(r["card_id"], r["rating"]) for r in rows] == [("lora-001", 3)]
    card = srs.load(s, 1, "lora-001")
    assert card is not None and card.due.isoformat() == line[1]


def test_corrupt_file_raises_and_start_fresh_keeps_a_backup(data_dir):
    data_dir.mkdir(parents=True)
    junk = b"this is not an sqlite database " * 200
    (data_dir / DB_NAME).write_bytes(junk)
    with pytest.raises(StoreCorrupt) as err:
        Store()
    assert str(data_dir / DB_NAME) in str(err.value) and "start fresh" in str(err.value)
    backup = start_fresh()
    assert backup is not None and backup.read_bytes() == junk and backup.name.startswith(DB_NAME + ".bak-")
    s = Store()
    assert s.version() == SCHEMA_VERSION and s.reviews(1) == []
    again = start_fresh()  # a second fresh start in the same second must not overwrite the first backup
    assert again != backup and backup.read_bytes() == junk


def test_damaged_page_is_detected(data_dir):
    s = Store()
    for i in range(200):
        srs.review(s, 1, f"lora-{i:03d}", 3, now=datetime(2026, 1, 1, tzinfo=timezone.utc))
    c = s.connect()
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    path = data_dir / DB_NAME
    blob = bytearray(path.read_bytes())
    page = 4096
    assert len(blob) > 4 * page
    blob[2 * page:4 * page] = os.urandom(2 * page)
    path.write_bytes(bytes(blob))
    with pytest.raises(StoreCorrupt):
        Store()


def test_two_processes_writing_reviews_concurrently(data_dir):
    Store()
    n = 25
    code = """
        import sys, time
        from app.study.store import Store
        from app.study import srs
        who, n, go = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
        s = Store()
        while time.time() < go: time.sleep(0.001)
        for i in range(n):
            srs.review(s, 1, f"{who}-{i:03d}", 3)
            srs.review(s, 1, "shared-001", 1 + i % 4)
        print("ok", flush=True)
    """
    go = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), who, str(n), str(go)],
                              env={**os.environ, "PEFTLAB_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)},
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for who in ("a", "b")]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "ok", err
    s = Store()
    rows = s.reviews(1)
    assert len(rows) == 4 * n
    assert sum(r["card_id"] == "shared-001" for r in rows) == 2 * n
    states = s.card_states(1)
    assert len(states) == 2 * n + 1
    # the shared card saw every one of the 2n reviews in order: its state_before chain is consistent
    shared = sorted((r for r in rows if r["card_id"] == "shared-001"), key=lambda r: r["id"])  # commit order
    assert [r["reviewed_at"] for r in shared] == sorted(r["reviewed_at"] for r in shared)
    assert shared[0]["state_before"] == srs.NEW_STATE
    assert all(r["state_before"] != srs.NEW_STATE for r in shared[1:])


def test_quiz_wrong_queue_and_interview_history(data_dir):
    s = Store()
    pid = s.profile_id()
    s.save_quiz(pid, ["lora"], [("lora-001", False, "x"), ("lora-002", True, "B")])
    s.save_quiz(pid, ["lora"], [("lora-001", False, "y"), ("lora-003", False, "1")])
    q = {r["card_id"]: r["misses"] for r in s.wrong_queue(pid)}
    assert q == {"lora-001": 2, "lora-003": 1}
    s.save_quiz(pid, ["lora"], [("lora-001", True, "ok")])
    assert [r["card_id"] for r in s.wrong_queue(pid)] == ["lora-003"]
    assert [(h["n_items"], h["n_correct"]) for h in s.quiz_history(pid)] == [(2, 1), (2, 0), (1, 1)]
    s.save_interview(pid, [{"question": "iq-001", "hit": [0, 2], "missed": [1], "n_points": 3},
                           {"question": "iq-002", "hit": [], "missed": [0], "n_points": 1}], duration_s=95)
    (h,) = s.interview_history(pid)
    assert h["score"] == pytest.approx(2 / 4) and h["n_questions"] == 2
    with pytest.raises(StoreError, match="at least one question"):
        s.save_interview(pid, [], duration_s=1)


def test_profiles_are_separate(data_dir):
    s = Store()
    a, b = s.profile_id("default"), s.profile_id("alice")
    assert a != b and s.profile_id("alice") == b
    srs.review(s, b, "lora-001", 4)
    assert s.card_states(a) == {} and list(s.card_states(b)) == ["lora-001"]
    with pytest.raises(StoreError, match="profile name"):
        s.profile_id("   ")
