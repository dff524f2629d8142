"""FSRS scheduling through the fsrs package: button previews, persistence, due counts, the queue."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fsrs import Rating

from app.study import srs
from app.study.cards import load_deck
from app.study.store import Store

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def test_new_card_intervals_increase_again_hard_good_easy():
    p = srs.preview(None, srs.scheduler(0.9), T0, "lora-001")
    again, hard, good, easy = (p[r] for r in srs.RATINGS)
    assert timedelta(0) < again < hard < good < easy


def test_review_state_intervals_increase_and_shrink_with_higher_retention(data_dir):
    s = Store()
    r1 = srs.review(s, 1, "lora-001", Rating.Good, now=T0, retention=0.9)
    r2 = srs.review(s, 1, "lora-001", Rating.Good, now=r1.card.due, retention=0.9)
    card = srs.load(s, 1, "lora-001")
    assert srs.state_name(card) == "review"
    at = r2.card.due
    loose, strict = srs.preview(card, srs.scheduler(0.8), at), srs.preview(card, srs.scheduler(0.97), at)
    assert loose[Rating.Again] < loose[Rating.Hard] < loose[Rating.Good] < loose[Rating.Easy]
    assert strict[Rating.Good] < loose[Rating.Good]  # wanting to remember more means reviewing sooner


def test_preview_matches_what_review_sets(data_dir):
    s = Store()
    shown = srs.preview(None, srs.scheduler(0.9), T0, "lora-002")
    for rating in srs.RATINGS:
        res = srs.review(s, 1, f"lora-{10 + int(rating):03d}", rating, now=T0, retention=0.9)
        assert res.interval == shown[rating]


@pytest.mark.parametrize("bad", [0.5, 1.0, "0.9", None])
def test_desired_retention_is_range_checked(bad):
    with pytest.raises(ValueError, match="desired_retention"):
        srs.scheduler(bad)


def test_stale_flag_when_another_tab_reviewed_first(data_dir):
    s = Store()
    shown = srs.card_json_last_review(srs.load(s, 1, "lora-001"))  # None: new card
    first = srs.review(s, 1, "lora-001", 3, now=T0, shown_last_review=shown)
    second = srs.review(s, 1, "lora-001", 3, now=T0 + timedelta(minutes=1), shown_last_review=shown)
    assert not first.stale and second.stale
    assert len(s.reviews(1)) == 2  # both ratings count, applied in order


def test_due_counts_and_queue_on_the_real_deck(data_dir):
    deck = load_deck()
    s = Store()
    lora = [c.id for c in deck.select(["lora"])]
    assert len(lora) >= 3
    before = srs.due_counts(s, 1, deck, T0)
    assert before["lora"] == {"due": 0, "new": len(lora), "total": len(lora)}
    srs.review(s, 1, lora[0], Rating.Again, now=T0)   # due again in a minute
    srs.review(s, 1, lora[1], Rating.Easy, now=T0)    # due in days
    later = T0 + timedelta(minutes=5)
    after = srs.due_counts(s, 1, deck, later)
    assert after["lora"] == {"due": 1, "new": len(lora) - 2, "total": len(lora)}
    q = srs.queue(s, 1, deck, ["lora"], later, new_limit=3)
    assert q[0] == lora[0] and lora[1] not in q
    assert len(q) == 1 + (3 - 2)  # two new cards were introduced today already


def test_format_interval_both_languages():
    assert srs.format_interval(timedelta(minutes=1)) == "1 min"
    assert srs.format_interval(timedelta(minutes=10), "zh") == "10 分钟"
    assert srs.format_interval(timedelta(days=8)) == "8 d"
    assert srs.format_interval(timedelta(days=8), "zh") == "8 天"
    assert srs.format_interval(timedelta(days=400)) == "1.1 y"


def test_bad_rating_is_refused(data_dir):
    with pytest.raises(ValueError, match="rating = 7"):
        srs.review(Store(), 1, "lora-001", 7)


def test_bad_saved_retention_falls_back_to_default(data_dir):
    s = Store()
    s.set_setting(1, srs.SETTING_RETENTION, "banana")
    assert srs.desired_retention(s, 1) == srs.DEFAULT_RETENTION
    s.set_setting(1, srs.SETTING_RETENTION, "0.5")
    assert srs.desired_retention(s, 1) == srs.DEFAULT_RETENTION
    srs.set_desired_retention(s, 1, 0.85)
    assert srs.desired_retention(s, 1) == 0.85
