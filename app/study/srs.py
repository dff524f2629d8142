"""Spaced repetition with FSRS (the ``fsrs`` package, v6): schedule, preview, review, due counts.

FSRS models each card's memory by stability S (days until recall probability falls to 90 %) and
difficulty D. After a review it predicts the retrievability ``R(t) = (1 + F·t/S)^C`` and schedules the
next review when R would drop to ``desired_retention``. Higher retention → shorter intervals.

Fuzzing is off: the interval printed on each button is exactly the one the review will set.
A card with no row in ``card_state`` is *new* (never reviewed).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from fsrs import Card as FsrsCard
from fsrs import Rating, ReviewLog, Scheduler, State

from app.study.store import Store

RATINGS = (Rating.Again, Rating.Hard, Rating.Good, Rating.Easy)
RETENTION_RANGE = (0.70, 0.99)
DEFAULT_RETENTION = 0.9
NEW_STATE = 0  # state_before for a card seen for the first time (fsrs.State starts at 1)
SETTING_RETENTION = "desired_retention"


def scheduler(desired_retention: float = DEFAULT_RETENTION) -> Scheduler:
    lo, hi = RETENTION_RANGE
    if not isinstance(desired_retention, (int, float)) or not lo <= desired_retention <= hi:
        raise ValueError(f"desired_retention = {desired_retention!r} is out of range: allowed {lo}..{hi}")
    return Scheduler(desired_retention=float(desired_retention), enable_fuzzing=False)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def new_card(card_id: str, now: datetime) -> FsrsCard:
    """A fresh FSRS card whose integer id is derived from our string id (stable across runs)."""
    fid = int.from_bytes(hashlib.sha1(card_id.encode()).digest()[:6], "big")
    return FsrsCard(card_id=fid, due=now)


def preview(card: FsrsCard | None, sched: Scheduler, now: datetime, card_id: str = "x") -> dict[Rating, timedelta]:
    """The interval each button would set, without saving anything."""
    base = card or new_card(card_id, now)
    out = {}
    for r in RATINGS:
        nxt, _ = sched.review_card(FsrsCard.from_json(base.to_json()), r, now)
        out[r] = nxt.due - now
    return out


def format_interval(td: timedelta, lang: str = "en") -> str:
    """``timedelta`` → '1 min', '10 min', '3 h', '8 d', '2.5 mo', '1.3 y' (zh: 分钟/小时/天/月/年)."""
    s = max(td.total_seconds(), 0.0)
    units = [(365.25 * 86400, "y", "年"), (30.44 * 86400, "mo", "个月"), (86400, "d", "天"),
             (3600, "h", "小时"), (60, "min", "分钟")]
    for size, en, zh in units:
        if s >= size or size == 60:
            v = s / size
            num = f"{v:.1f}".rstrip("0").rstrip(".") if v < 10 and size > 86400 else f"{round(v)}"
            return f"{num} {en}" if lang == "en" else f"{num} {zh}"
    raise AssertionError("unreachable")


def load(store: Store, pid: int, card_id: str) -> FsrsCard | None:
    with store.tx(write=False) as c:
        row = c.execute("SELECT card_json FROM card_state WHERE profile_id = ? AND card_id = ?", (pid, card_id)).fetchone()
    return FsrsCard.from_json(row["card_json"]) if row else None


def desired_retention(store: Store, pid: int) -> float:
    """The profile's setting; the default if it is missing or was edited out of range."""
    try:
        value = float(store.get_setting(pid, SETTING_RETENTION, str(DEFAULT_RETENTION)))
    except ValueError:
        return DEFAULT_RETENTION
    return value if RETENTION_RANGE[0] <= value <= RETENTION_RANGE[1] else DEFAULT_RETENTION


def set_desired_retention(store: Store, pid: int, value: float) -> None:
    scheduler(value)  # validates
    store.set_setting(pid, SETTING_RETENTION, repr(float(value)))


@dataclass
class ReviewResult:
    card: FsrsCard
    log: ReviewLog
    interval: timedelta
    stale: bool  # another tab reviewed this card after it was shown here; applied to the fresh state


def review(store: Store, pid: int, card_id: str, rating: Rating | int, *, now: datetime | None = None,
           retention: float | None = None, shown_last_review: str | None = "") -> ReviewResult:
    """Rate ``card_id`` and persist the new state and the log row in ONE write transaction.

    The state is re-read inside the transaction (``BEGIN IMMEDIATE`` holds the write lock), so two
    tabs rating the same card both count, in order. ``shown_last_review`` is the card's
    ``last_review`` when the page displayed it (None for a new card); a mismatch sets ``stale``.
    Returns only after COMMIT, which with ``synchronous=FULL`` has reached the disk.
    """
    if int(rating) not in (1, 2, 3, 4):
        raise ValueError(f"rating = {rating!r} is not allowed: 1 Again, 2 Hard, 3 Good, 4 Easy")
    rating = Rating(int(rating))
    sched = scheduler(retention if retention is not None else desired_retention(store, pid))
    with store.tx() as c:
        now = now or now_utc()  # read under the write lock: review times follow commit order
        row = c.execute("SELECT card_json FROM card_state WHERE profile_id = ? AND card_id = ?", (pid, card_id)).fetchone()
        card = FsrsCard.from_json(row["card_json"]) if row else new_card(card_id, now)
        before = int(card.state) if row else NEW_STATE
        current = card.last_review.isoformat() if (row and card.last_review) else None
        stale = shown_last_review != "" and shown_last_review != current
        nxt, log = sched.review_card(card, rating, now)
        c.execute("""INSERT INTO card_state VALUES (?, ?, ?, ?, ?) ON CONFLICT (profile_id, card_id) DO UPDATE SET
                     card_json = excluded.card_json, due = excluded.due, updated_at = excluded.updated_at""",
                  (pid, card_id, nxt.to_json(), nxt.due.timestamp(), time.time()))
        c.execute("INSERT INTO review_log (profile_id, card_id, rating, state_before, reviewed_at, log_json) VALUES (?,?,?,?,?,?)",
                  (pid, card_id, int(rating), before, now.timestamp(), log.to_json()))
    return ReviewResult(card=nxt, log=log, interval=nxt.due - now, stale=stale)


def due_counts(store: Store, pid: int, deck, now: datetime | None = None, topics=None) -> dict[str, dict[str, int]]:
    """Per primary topic: ``due`` (reviewed before, due now), ``new`` (never reviewed), ``total``."""
    now_ts = (now or now_utc()).timestamp()
    states = store.card_states(pid)
    out: dict[str, dict[str, int]] = {}
    for card in deck.select(topics):
        row = out.setdefault(card.topic, {"due": 0, "new": 0, "total": 0})
        row["total"] += 1
        st = states.get(card.id)
        if st is None:
            row["new"] += 1
        elif st["due"] <= now_ts:
            row["due"] += 1
    return out


def new_today(store: Store, pid: int, now: datetime | None = None) -> int:
    """How many never-seen cards were introduced since UTC midnight (for the daily new-card limit)."""
    now = now or now_utc()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    return sum(1 for r in store.reviews(pid, since=midnight) if r["state_before"] == NEW_STATE)


def queue(store: Store, pid: int, deck, topics=None, now: datetime | None = None, new_limit: int = 20) -> list[str]:
    """Card ids to study now: due cards (most overdue first), then up to ``new_limit`` new ones
    (minus those already introduced today), in deck order."""
    now = now or now_utc()
    states = store.card_states(pid)
    cards = deck.select(topics)
    due = sorted((states[c.id]["due"], c.id) for c in cards if c.id in states and states[c.id]["due"] <= now.timestamp())
    room = max(new_limit - new_today(store, pid, now), 0)
    fresh = [c.id for c in cards if c.id not in states][:room]
    return [cid for _, cid in due] + fresh


def state_name(card: FsrsCard | None) -> str:
    return "new" if card is None else State(card.state).name.lower()


def card_json_last_review(card: FsrsCard | None) -> str | None:
    """What :func:`review` compares against ``shown_last_review``."""
    return card.last_review.isoformat() if card and card.last_review else None
