"""Drill attempts in the study store, and how a failed drill feeds review.

* :func:`record_attempt` saves one graded attempt (code + report) and, when it failed, makes the drill's
  related flashcards due NOW in FSRS (a card already in review gets ``due = now``; a card never seen gets a
  fresh FSRS state due now), so they open first on the Flashcards page and count on the Progress page.
* :func:`history`, :func:`status` and :func:`summary` are what the Drills and Progress pages show.
"""
from __future__ import annotations

import json
import time
from datetime import datetime

from fsrs import Card as FsrsCard

from app.study import srs
from app.study.store import Store


def make_due(store: Store, pid: int, card_ids, now: datetime | None = None) -> list[str]:
    """Set every card in ``card_ids`` due at ``now`` (FSRS state kept, only ``due`` moves); returns the ids
    that were not already due."""
    now = now or srs.now_utc()
    moved = []
    with store.tx() as c:
        for cid in card_ids:
            row = c.execute("SELECT card_json, due FROM card_state WHERE profile_id = ? AND card_id = ?",
                            (pid, cid)).fetchone()
            if row is not None and row["due"] <= now.timestamp():
                continue
            card = FsrsCard.from_json(row["card_json"]) if row else srs.new_card(cid, now)
            card.due = now
            c.execute("""INSERT INTO card_state VALUES (?, ?, ?, ?, ?) ON CONFLICT (profile_id, card_id) DO UPDATE SET
                         card_json = excluded.card_json, due = excluded.due, updated_at = excluded.updated_at""",
                      (pid, cid, card.to_json(), now.timestamp(), time.time()))
            moved.append(cid)
    return moved


def record_attempt(store: Store, pid: int, drill, report: dict, code: str, now: datetime | None = None) -> dict:
    """Save the attempt; on failure schedule ``drill.cards`` for review. ``report`` is Report.to_dict().
    Returns {"id", "due_cards": [ids made due by this attempt]}."""
    now = now or srs.now_utc()
    tests = report.get("tests", [])
    with store.tx() as c:
        cur = c.execute("""INSERT INTO drill_attempts (profile_id, drill_id, at, passed, n_passed, n_tests, seconds,
                           code, report) VALUES (?,?,?,?,?,?,?,?,?)""",
                        (pid, drill.id, now.timestamp(), int(bool(report.get("passed"))),
                         sum(bool(t["passed"]) for t in tests), len(tests), float(report.get("seconds", 0.0)),
                         code, json.dumps(report, ensure_ascii=False)))
        attempt_id = cur.lastrowid
    due = [] if report.get("passed") or report.get("status") == "refused" else make_due(store, pid, drill.cards, now)
    return {"id": attempt_id, "due_cards": due}


def history(store: Store, pid: int, drill_id: str | None = None, limit: int = 50) -> list[dict]:
    """Newest first: {id, drill_id, at, passed, n_passed, n_tests, seconds, code, report (dict)}."""
    q = "SELECT * FROM drill_attempts WHERE profile_id = ?" + (" AND drill_id = ?" if drill_id else "")
    args = (pid, drill_id) if drill_id else (pid,)
    with store.tx(write=False) as c:
        rows = c.execute(q + " ORDER BY at DESC, id DESC LIMIT ?", (*args, limit)).fetchall()
    return [{**dict(r), "passed": bool(r["passed"]), "report": json.loads(r["report"])} for r in rows]


def status(store: Store, pid: int) -> dict[str, str]:
    """{drill id: "passed" | "failed"} for every drill attempted (passed if any attempt passed)."""
    with store.tx(write=False) as c:
        rows = c.execute("SELECT drill_id, MAX(passed) AS ok FROM drill_attempts WHERE profile_id = ? "
                         "GROUP BY drill_id", (pid,)).fetchall()
    return {r["drill_id"]: "passed" if r["ok"] else "failed" for r in rows}


def summary(store: Store, pid: int, drills: dict) -> dict:
    """For the Progress page: attempts, drills passed / attempted / total, and the drills still failing with
    their related cards. ``drills``: {id: Drill}."""
    st = status(store, pid)
    with store.tx(write=False) as c:
        n = c.execute("SELECT COUNT(*) FROM drill_attempts WHERE profile_id = ?", (pid,)).fetchone()[0]
    failing = [{"drill": d, "cards": list(drills[d].cards)} for d, s in st.items() if s == "failed" and d in drills]
    return {"attempts": n, "passed": sum(s == "passed" for s in st.values()), "attempted": len(st),
            "total": len(drills), "failing": failing}
