"""``python -m app.study``: validate the deck and print cards per topic, kind and language (Markdown)."""
from __future__ import annotations

from app.study.cards import KINDS, LANGS, load_deck, stats


def main() -> None:
    deck = load_deck()
    rows = stats(deck)
    cols = ["topic", "cards", *KINDS, *LANGS, "questions"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    total = {c: sum(r[c] for r in rows) for c in cols[1:]}
    print("| **total** | " + " | ".join(str(total[c]) for c in cols[1:]) + " |")


if __name__ == "__main__":
    main()
