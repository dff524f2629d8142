"""Progress numbers from the store: due today, retention, streak, weakest topics, score history.

Definitions (each computed from logged events, nothing estimated):

* **retention** = share of reviews of cards already in the *Review* state that were not rated
  Again — FSRS's "true retention", the quantity ``desired_retention`` aims at. Learning-step
  reviews are excluded because they are seconds-to-minutes apart and tell nothing about memory.
* **streak** = consecutive UTC days, ending today (or yesterday, if today has nothing yet),
  with at least one review, quiz or interview.
* **topic accuracy** = (reviews not rated Again + quiz answers right) / (reviews + quiz answers)
  over a topic's cards; weakest = lowest accuracy among topics with at least ``min_events``.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone

from fsrs import State

from app.study import srs
from app.study.store import Store

AGAIN = 1


def _day(ts: float) -> date:
    return datetime.fromtimestamp(ts, timezone.utc).date()


def retention(reviews) -> tuple[float | None, int]:
    """(share not forgotten, number of counted reviews); (None, 0) when nothing counts yet."""
    counted = [r for r in reviews if r["state_before"] == int(State.Review)]
    if not counted:
        return None, 0
    return sum(r["rating"] != AGAIN for r in counted) / len(counted), len(counted)


def streak(days: set[date], today: date) -> int:
    start = today if today in days else today - timedelta(days=1)
    n = 0
    while start - timedelta(days=n) in days:
        n += 1
    return n


def daily_reviews(reviews, today: date, n_days: int = 30) -> list[dict]:
    """[{date, reviews, retention}] for the last ``n_days`` days (retention None on days without data)."""
    by_day = defaultdict(list)
    for r in reviews:
        by_day[_day(r["reviewed_at"])].append(r)
    out = []
    for i in range(n_days - 1, -1, -1):
        d = today - timedelta(days=i)
        ret, _ = retention(by_day.get(d, []))
        out.append({"date": d, "reviews": len(by_day.get(d, [])), "retention": ret})
    return out


def due_forecast(store: Store, pid: int, now: datetime, n_days: int = 14) -> list[dict]:
    """[{date, due}] — how many reviewed cards fall due on each of the next ``n_days`` days
    (today includes everything overdue)."""
    today = now.astimezone(timezone.utc).date()
    counts = Counter(max(_day(r["due"]), today) for r in store.card_states(pid).values())
    return [{"date": today + timedelta(days=i), "due": counts.get(today + timedelta(days=i), 0)} for i in range(n_days)]


def topic_accuracy(store: Store, pid: int, deck, min_events: int = 3) -> list[dict]:
    """[{topic, events, accuracy}] sorted weakest first; topics with fewer events are left out."""
    topic_of = {cid: c.topic for cid, c in deck.cards.items()}
    right, total = Counter(), Counter()
    for r in store.reviews(pid):
        t = topic_of.get(r["card_id"])
        if t:
            total[t] += 1
            right[t] += r["rating"] != AGAIN
    for a in store.quiz_answers(pid):
        t = topic_of.get(a["card_id"])
        if t:
            total[t] += 1
            right[t] += bool(a["correct"])
    rows = [{"topic": t, "events": n, "accuracy": right[t] / n} for t, n in total.items() if n >= min_events]
    return sorted(rows, key=lambda r: (r["accuracy"], -r["events"]))


def score_history(store: Store, pid: int) -> list[dict]:
    """[{when, kind: quiz|interview, score 0..1, n}] in time order."""
    rows = [{"when": datetime.fromtimestamp(q["finished_at"], timezone.utc), "kind": "quiz",
             "score": q["n_correct"] / q["n_items"] if q["n_items"] else 0.0, "n": q["n_items"]}
            for q in store.quiz_history(pid)]
    rows += [{"when": datetime.fromtimestamp(s["finished_at"], timezone.utc), "kind": "interview",
              "score": s["score"], "n": s["n_questions"]} for s in store.interview_history(pid)]
    return sorted(rows, key=lambda r: r["when"])


def summary(store: Store, pid: int, deck, now: datetime | None = None) -> dict:
    """Everything the progress page shows, in one dict."""
    now = now or srs.now_utc()
    today = now.astimezone(timezone.utc).date()
    reviews = store.reviews(pid)
    counts = srs.due_counts(store, pid, deck, now)
    ret, n_ret = retention(reviews)
    active = {_day(r["reviewed_at"]) for r in reviews}
    active |= {_day(q["finished_at"]) for q in store.quiz_history(pid)}
    active |= {_day(s["finished_at"]) for s in store.interview_history(pid)}
    return {
        "due_today": sum(c["due"] for c in counts.values()),
        "new": sum(c["new"] for c in counts.values()),
        "seen": sum(c["total"] - c["new"] for c in counts.values()),
        "total": sum(c["total"] for c in counts.values()),
        "reviews": len(reviews),
        "retention": ret, "retention_n": n_ret,
        "streak": streak(active, today),
        "per_topic": counts,
        "daily": daily_reviews(reviews, today),
        "forecast": due_forecast(store, pid, now),
        "weakest": topic_accuracy(store, pid, deck),
        "scores": score_history(store, pid),
    }


def recent_missed(store: Store, pid: int, deck, lang: str, n_sessions: int = 3) -> list[dict]:
    """Key points missed in the last ``n_sessions`` mock interviews, newest first, in ``lang``:
    [{question, q, missed: [point, ...]}] (questions no longer in the deck are skipped)."""
    out = []
    for s in reversed(store.interview_history(pid)[-n_sessions:]):
        for d in json.loads(s["details"]):
            item = deck.questions.get(d["question"]) or deck.cards.get(d["question"])
            if item is None or not d["missed"]:
                continue
            pts = item.points(lang)
            out.append({"question": item.id, "q": item.q(lang), "missed": [pts[j] for j in d["missed"] if j < len(pts)]})
    return out
