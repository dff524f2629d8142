"""The study database: one SQLite file, ``$PEFTLAB_DATA_DIR/study.sqlite3`` (default ``./data``).

Durability and concurrency, in the order they matter:

* ``journal_mode=WAL`` — readers never block the writer; several browser tabs or server processes can
  share one file.
* ``synchronous=FULL`` — a COMMIT returns only after the WAL is fsync-ed, so a review that
  :func:`app.study.srs.review` returned is on disk even if the server is killed (or the power fails)
  right after.
* ``BEGIN IMMEDIATE`` + ``busy_timeout`` — every write takes the write lock up front and waits up to
  ``BUSY_TIMEOUT_MS`` for another writer instead of failing; transactions are a few statements long.
* ``PRAGMA user_version`` — the schema version. ``MIGRATIONS[i]`` takes version ``i`` to ``i + 1``;
  a new schema is a new list entry, never an edit of an old one.

A file that is not a database (or fails ``quick_check``) raises :class:`StoreCorrupt`; nothing is
overwritten until the learner asks for :func:`start_fresh`, which moves the bad file aside with a
timestamp and leaves an empty, migrated database in its place.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

DB_NAME = "study.sqlite3"
ENV_DIR = "PEFTLAB_DATA_DIR"
BUSY_TIMEOUT_MS = 10_000
DEFAULT_PROFILE = "default"

MIGRATIONS: list[list[str]] = [
    # v0 -> v1: profiles, FSRS card state, the review log
    [
        """CREATE TABLE profiles (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                                  created_at REAL NOT NULL)""",
        f"INSERT INTO profiles (name, created_at) VALUES ('{DEFAULT_PROFILE}', CAST(strftime('%s','now') AS REAL))",
        """CREATE TABLE card_state (
               profile_id INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
               card_id TEXT NOT NULL,
               card_json TEXT NOT NULL,          -- fsrs.Card.to_json()
               due REAL NOT NULL,                -- unix seconds, for "due now" queries
               updated_at REAL NOT NULL,
               PRIMARY KEY (profile_id, card_id))""",
        "CREATE INDEX card_state_due ON card_state (profile_id, due)",
        """CREATE TABLE review_log (
               id INTEGER PRIMARY KEY,
               profile_id INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
               card_id TEXT NOT NULL,
               rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 4),
               state_before INTEGER NOT NULL,    -- 0 new, 1 learning, 2 review, 3 relearning
               reviewed_at REAL NOT NULL,
               log_json TEXT NOT NULL)""",
        "CREATE INDEX review_log_time ON review_log (profile_id, reviewed_at)",
    ],
    # v1 -> v2: settings, quizzes with a wrong-answer queue, mock interviews
    [
        """CREATE TABLE settings (
               profile_id INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
               key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (profile_id, key))""",
        """CREATE TABLE quiz_attempts (
               id INTEGER PRIMARY KEY,
               profile_id INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
               finished_at REAL NOT NULL, topics TEXT NOT NULL,
               n_items INTEGER NOT NULL, n_correct INTEGER NOT NULL)""",
        """CREATE TABLE quiz_answers (
               attempt_id INTEGER NOT NULL REFERENCES quiz_attempts(id) ON DELETE CASCADE,
               card_id TEXT NOT NULL, correct INTEGER NOT NULL, given TEXT NOT NULL)""",
        """CREATE TABLE wrong_queue (
               profile_id INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
               card_id TEXT NOT NULL, misses INTEGER NOT NULL, last_missed REAL NOT NULL,
               PRIMARY KEY (profile_id, card_id))""",
        """CREATE TABLE interview_sessions (
               id INTEGER PRIMARY KEY,
               profile_id INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
               finished_at REAL NOT NULL, n_questions INTEGER NOT NULL,
               score REAL NOT NULL,              -- points hit / points asked, 0..1
               duration_s REAL NOT NULL,
               details TEXT NOT NULL)            -- JSON: per question id, hit and missed points""",
    ],
    # v2 -> v3: coding drills (labs/drills): every graded attempt, with its code and report
    [
        """CREATE TABLE drill_attempts (
               id INTEGER PRIMARY KEY,
               profile_id INTEGER NOT NULL REFERENCES profiles(id) ON DELETE CASCADE,
               drill_id TEXT NOT NULL, at REAL NOT NULL, passed INTEGER NOT NULL,
               n_passed INTEGER NOT NULL, n_tests INTEGER NOT NULL, seconds REAL NOT NULL,
               code TEXT NOT NULL, report TEXT NOT NULL)   -- JSON: labs.drills.runner.Report.to_dict()""",
        "CREATE INDEX drill_attempts_drill ON drill_attempts (profile_id, drill_id, at)",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(RuntimeError):
    """The database cannot be used as it is (a newer schema, a bad profile name)."""


class StoreCorrupt(StoreError):
    """The file is not a usable SQLite database. ``.path`` is the file; see :func:`start_fresh`."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"study database {path} is unreadable ({reason}); start fresh to continue — "
                         f"the damaged file is kept as a timestamped backup beside it")
        self.path = path


def data_dir() -> Path:
    """``$PEFTLAB_DATA_DIR`` if set, else ``./data``."""
    return Path(os.environ.get(ENV_DIR) or "data")


def _is_corruption(e: sqlite3.DatabaseError) -> bool:
    # OperationalError ("database is locked") and IntegrityError are ordinary; the bare
    # DatabaseError class is what SQLite raises for "file is not a database" / "malformed".
    return type(e) is sqlite3.DatabaseError


class Store:
    """Short-lived connections over one file. Every method is one transaction."""

    def __init__(self, directory: Path | str | None = None):
        self.dir = Path(directory) if directory else data_dir()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / DB_NAME
        self._check()
        self.migrate()

    # ------------------------------------------------------------ connections
    def connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as e:
            if _is_corruption(e):
                raise StoreCorrupt(self.path, str(e)) from None
            raise
        if mode.lower() != "wal":
            conn.close()
            raise StoreError(f"{self.path}: journal_mode is {mode!r}, WAL is required (is the folder on a network share?)")
        return conn

    @contextmanager
    def tx(self, write: bool = True):
        """``BEGIN IMMEDIATE`` (write) or a plain read; COMMIT on success, ROLLBACK on error."""
        conn = self.connect()
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if _is_corruption(e):
                raise StoreCorrupt(self.path, str(e)) from None
            raise
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def _check(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
            try:
                verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.DatabaseError as e:
            raise StoreCorrupt(self.path, str(e)) from None
        if verdict != "ok":
            raise StoreCorrupt(self.path, f"quick_check: {verdict}")

    def version(self) -> int:
        with self.tx(write=False) as c:
            return c.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> int:
        """Apply the missing migrations, each in its own transaction; returns the final version."""
        if self.version() == SCHEMA_VERSION:  # the common case: no write lock taken on every page run
            return SCHEMA_VERSION
        while True:
            with self.tx() as c:
                v = c.execute("PRAGMA user_version").fetchone()[0]
                if v > SCHEMA_VERSION:
                    raise StoreError(f"{self.path} has schema version {v}, this code knows up to "
                                     f"{SCHEMA_VERSION}: update PEFT Lab or point {ENV_DIR} elsewhere")
                if v == SCHEMA_VERSION:
                    return v
                for stmt in MIGRATIONS[v]:
                    c.execute(stmt)
                c.execute(f"PRAGMA user_version = {v + 1}")

    # ------------------------------------------------------------ profiles and settings
    def profiles(self) -> list[tuple[int, str]]:
        with self.tx(write=False) as c:
            return [(r["id"], r["name"]) for r in c.execute("SELECT id, name FROM profiles ORDER BY id")]

    def profile_id(self, name: str = DEFAULT_PROFILE, create: bool = True) -> int:
        name = (name or "").strip()
        if not name or len(name) > 40:
            raise StoreError(f"profile name {name!r} is not allowed: 1..40 characters")
        with self.tx(write=False) as c:
            row = c.execute("SELECT id FROM profiles WHERE name = ?", (name,)).fetchone()
        if row:
            return row["id"]
        with self.tx() as c:  # re-checked under the write lock: another tab may have just created it
            row = c.execute("SELECT id FROM profiles WHERE name = ?", (name,)).fetchone()
            if row:
                return row["id"]
            if not create:
                raise StoreError(f"unknown profile {name!r}")
            return c.execute("INSERT INTO profiles (name, created_at) VALUES (?, ?)", (name, time.time())).lastrowid

    def get_setting(self, pid: int, key: str, default: str | None = None) -> str | None:
        with self.tx(write=False) as c:
            row = c.execute("SELECT value FROM settings WHERE profile_id = ? AND key = ?", (pid, key)).fetchone()
        return row["value"] if row else default

    def set_setting(self, pid: int, key: str, value: str) -> None:
        with self.tx() as c:
            c.execute("INSERT INTO settings VALUES (?, ?, ?) ON CONFLICT (profile_id, key) DO UPDATE SET value = excluded.value",
                      (pid, key, str(value)))

    # ------------------------------------------------------------ reads used by srs / progress
    def card_states(self, pid: int) -> dict[str, sqlite3.Row]:
        with self.tx(write=False) as c:
            return {r["card_id"]: r for r in c.execute("SELECT * FROM card_state WHERE profile_id = ?", (pid,))}

    def reviews(self, pid: int, since: float = 0.0) -> list[sqlite3.Row]:
        with self.tx(write=False) as c:
            return c.execute("SELECT * FROM review_log WHERE profile_id = ? AND reviewed_at >= ? ORDER BY reviewed_at",
                             (pid, since)).fetchall()

    # ------------------------------------------------------------ quizzes
    def save_quiz(self, pid: int, topics: list[str], answers: list[tuple[str, bool, str]], at: float | None = None) -> int:
        """One finished quiz: ``answers`` = [(card_id, correct, given)]. Misses join the wrong queue;
        a right answer takes the card off it. Returns the attempt id."""
        at = time.time() if at is None else at
        with self.tx() as c:
            aid = c.execute("INSERT INTO quiz_attempts (profile_id, finished_at, topics, n_items, n_correct) VALUES (?,?,?,?,?)",
                            (pid, at, json.dumps(topics), len(answers), sum(bool(a[1]) for a in answers))).lastrowid
            c.executemany("INSERT INTO quiz_answers VALUES (?,?,?,?)", [(aid, cid, int(ok), given) for cid, ok, given in answers])
            for cid, ok, _ in answers:
                if ok:
                    c.execute("DELETE FROM wrong_queue WHERE profile_id = ? AND card_id = ?", (pid, cid))
                else:
                    c.execute("""INSERT INTO wrong_queue VALUES (?, ?, 1, ?) ON CONFLICT (profile_id, card_id)
                                 DO UPDATE SET misses = misses + 1, last_missed = excluded.last_missed""", (pid, cid, at))
        return aid

    def wrong_queue(self, pid: int) -> list[sqlite3.Row]:
        with self.tx(write=False) as c:
            return c.execute("SELECT * FROM wrong_queue WHERE profile_id = ? ORDER BY misses DESC, last_missed DESC",
                             (pid,)).fetchall()

    def quiz_history(self, pid: int) -> list[sqlite3.Row]:
        with self.tx(write=False) as c:
            return c.execute("SELECT * FROM quiz_attempts WHERE profile_id = ? ORDER BY finished_at", (pid,)).fetchall()

    def quiz_answers(self, pid: int) -> list[sqlite3.Row]:
        with self.tx(write=False) as c:
            return c.execute("""SELECT a.card_id, a.correct, q.finished_at FROM quiz_answers a
                                JOIN quiz_attempts q ON q.id = a.attempt_id WHERE q.profile_id = ?""", (pid,)).fetchall()

    # ------------------------------------------------------------ interviews
    def save_interview(self, pid: int, details: list[dict], duration_s: float, at: float | None = None) -> int:
        """``details`` = [{"question": id, "hit": [i, ...], "missed": [i, ...], "n_points": n, ...}]."""
        asked = sum(d["n_points"] for d in details)
        if not details or asked <= 0:
            raise StoreError(f"an interview needs at least one question with points, got {len(details)} questions")
        score = sum(len(d["hit"]) for d in details) / asked
        with self.tx() as c:
            return c.execute("INSERT INTO interview_sessions (profile_id, finished_at, n_questions, score, duration_s, details) "
                             "VALUES (?,?,?,?,?,?)", (pid, time.time() if at is None else at, len(details), score,
                                                      float(duration_s), json.dumps(details, ensure_ascii=False))).lastrowid

    def interview_history(self, pid: int) -> list[sqlite3.Row]:
        with self.tx(write=False) as c:
            return c.execute("SELECT * FROM interview_sessions WHERE profile_id = ? ORDER BY finished_at", (pid,)).fetchall()


def start_fresh(directory: Path | str | None = None) -> Path | None:
    """Move ``study.sqlite3`` (and its ``-wal``/``-shm``) aside as ``study.sqlite3.bak-<UTC time>``,
    then create an empty migrated database. Returns the backup path (None if there was no file)."""
    d = Path(directory) if directory else data_dir()
    db = d / DB_NAME
    backup = None
    if db.exists():
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        backup = d / f"{DB_NAME}.bak-{stamp}"
        n = 1
        while backup.exists():
            backup, n = d / f"{DB_NAME}.bak-{stamp}-{n}", n + 1
        db.rename(backup)
        for suffix in ("-wal", "-shm"):
            side = d / (DB_NAME + suffix)
            if side.exists():
                side.rename(Path(str(backup) + suffix))
    Store(d)
    return backup
