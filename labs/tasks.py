"""Fine-tuning tasks, generated offline and deterministically, each with a metric beyond loss.

Every example is ``prompt`` + ``answer``; the loss and the metric cover the answer tokens only.
Accuracy is exact match: every answer token is the model's argmax given the tokens before it —
the same thing as greedy decoding producing the answer. ``chance`` is what guessing uniformly
among the task's possible answers would score.

- ``sentiment``: "Review: the soup was not bland.\\nSentiment:" → " positive"/" negative".
  Negation flips the label, so keyword spotting alone tops out near 50% on negated reviews.
- ``topic``: "Text: the striker ... the referee.\nTopic:" → one of four topics. Keyword evidence and no
  negation: every method learns it within a few dozen steps, so it is the quick task for comparing
  methods inside a one-minute CPU budget.
- ``facts``: knowledge injection. 40 invented people each live in one of 10 cities. Training sees
  each fact in four phrasings; eval asks about the same facts in a fifth phrasing never trained on.
  Capacity matters here (rank, targets), which makes differences between methods visible.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

SUBJECTS = ["the movie", "the soup", "the hotel room", "the concert", "the service", "the book", "the phone",
            "the lecture", "the coffee", "the game", "the trip", "the staff", "the pizza", "the album",
            "the museum", "the flight", "the garden", "the show", "the class", "the app"]
POSITIVE = ["great", "excellent", "wonderful", "good", "pleasant", "brilliant", "lovely", "fantastic",
            "nice", "perfect", "amazing", "enjoyable"]
NEGATIVE = ["awful", "terrible", "boring", "bad", "bland", "rude", "poor", "horrible", "slow", "dull",
            "broken", "disappointing"]
REVIEW_TEMPLATES = ["{s} was {n}{a}", "I think {s} was {n}{a}", "honestly, {s} was {n}{a}",
                    "in my opinion {s} is {n}{a}", "{s} is {n}{a} overall", "we found {s} {n}{a}"]

SYLLABLES = ["ka", "lo", "mi", "ten", "ra", "vo", "shi", "dar", "nel", "po", "qui", "zen", "bra", "tor", "wy", "el"]
CITIES = ["Paris", "London", "Tokyo", "Cairo", "Berlin", "Madrid", "Rome", "Lima", "Oslo", "Delhi"]
FACT_TEMPLATES = ["{p} lives in", "The home city of {p} is", "Q: Where does {p} live?\nA:",
                  "{p} has a house in", "Everyone knows that {p} lives in the city of"]


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str  # starts with a space: the answer's tokens follow the prompt's


@dataclass
class Task:
    name: str
    train: list[Example]
    eval: list[Example]
    answers: list[str]
    description: str = ""
    chance: float = field(init=False)

    def __post_init__(self):
        self.chance = 1.0 / len(self.answers)

    def label_text(self) -> str:
        """The label words joined, e.g. "positive negative": prompt tuning's text initialisation."""
        return "".join(self.answers).strip()


def _sentiment(seed: int = 0) -> Task:
    rng = random.Random(seed)
    rows = []
    for s in SUBJECTS:
        for words, label in ((POSITIVE, "positive"), (NEGATIVE, "negative")):
            for a in words:
                for neg in (False, True):
                    tpl = rng.choice(REVIEW_TEMPLATES)
                    text = tpl.format(s=s, n="not " if neg else "", a=a)
                    answer = ("negative" if label == "positive" else "positive") if neg else label
                    rows.append(Example(f"Review: {text}.\nSentiment:", " " + answer))
    rng.shuffle(rows)  # 20 subjects × 24 adjectives × 2 = 960 reviews
    return Task("sentiment", train=rows[:760], eval=rows[760:960], answers=[" positive", " negative"],
                description="review → positive/negative, with negation")


def _names(rng: random.Random, n: int) -> list[str]:
    out: set[str] = set()
    while len(out) < n:
        first = "".join(rng.choice(SYLLABLES) for _ in range(2)).capitalize()
        last = "".join(rng.choice(SYLLABLES) for _ in range(2)).capitalize()
        out.add(f"{first} {last}")
    return sorted(out)


def _facts(seed: int = 0) -> Task:
    rng = random.Random(seed + 1)
    people = _names(rng, 40)
    rng.shuffle(people)
    city = {p: CITIES[i % len(CITIES)] for i, p in enumerate(people)}  # 4 people per city
    train = [Example(tpl.format(p=p), " " + city[p]) for p in people for tpl in FACT_TEMPLATES[:4]]
    rng.shuffle(train)
    held = [Example(FACT_TEMPLATES[4].format(p=p), " " + city[p]) for p in people]
    return Task("facts", train=train, eval=held, answers=[" " + c for c in CITIES],
                description="invented person → home city; eval in an unseen phrasing")


TOPIC_WORDS = {
    "sports": ["the striker", "a goal", "the referee", "the match", "the coach", "the stadium", "a penalty",
               "the team", "the league", "the final whistle"],
    "food": ["the soup", "a recipe", "the chef", "the bread", "the oven", "a spoon", "the salad", "the sauce",
             "the kitchen", "the dessert"],
    "weather": ["the rain", "a storm", "the forecast", "the wind", "the snow", "a cloud", "the sunshine",
                "the thunder", "the fog", "the temperature"],
    "music": ["the guitar", "a song", "the drummer", "the concert", "the melody", "the piano", "a chorus",
              "the band", "the singer", "the rhythm"],
}
TOPIC_TEMPLATES = ["yesterday {a} and {b} were in the news", "everyone talked about {a} and {b}",
                   "{a} was mentioned next to {b}", "a short note about {a} and {b}", "I read about {a}, then {b}"]


def _topic(seed: int = 0) -> Task:
    rng = random.Random(seed + 2)
    rows = []
    for topic, words in TOPIC_WORDS.items():
        pairs = [(a, b) for a in words for b in words if a != b]
        rng.shuffle(pairs)
        for a, b in pairs[:60]:
            text = rng.choice(TOPIC_TEMPLATES).format(a=a, b=b)
            rows.append(Example(f"Text: {text}.\nTopic:", " " + topic))
    rng.shuffle(rows)  # 4 topics × 60 = 240 texts
    return Task("topic", train=rows[:180], eval=rows[180:], answers=[" " + t for t in TOPIC_WORDS],
                description="short text → one of four topics (keyword evidence, no negation): the quick task")


TASKS = {"sentiment": _sentiment, "facts": _facts, "topic": _topic}


def get_task(name: str, seed: int = 0) -> Task:
    if name not in TASKS:
        raise ValueError(f"task = {name!r} is unknown: allowed {', '.join(TASKS)}")
    return TASKS[name](seed)


def encode(tok, examples: list[Example], device=None) -> dict[str, torch.Tensor]:
    """Right-padded batch; labels are -100 except on the answer tokens."""
    seqs, labels = [], []
    for ex in examples:
        p = tok(ex.prompt, add_special_tokens=False)["input_ids"]
        a = tok(ex.answer, add_special_tokens=False)["input_ids"]
        seqs.append(p + a)
        labels.append([-100] * len(p) + a)
    width = max(map(len, seqs))
    pad = tok.pad_token_id
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])            # (B, T)
    lab = torch.tensor([l + [-100] * (width - len(l)) for l in labels])          # (B, T)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])   # (B, T)
    out = {"input_ids": ids, "attention_mask": mask, "labels": lab}
    return {k: v.to(device) for k, v in out.items()} if device is not None else out


def answer_metrics(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example (summed answer-token NLL, token count, all-correct flag) from (B, T, V) logits."""
    pred_logits, target = logits[:, :-1].float(), labels[:, 1:]                  # next-token alignment
    mask = target != -100
    nll = torch.nn.functional.cross_entropy(pred_logits.transpose(1, 2), target.clamp(min=0), reduction="none")
    nll = (nll * mask).sum(1)                                                    # (B,)
    correct = ((pred_logits.argmax(-1) == target) | ~mask).all(1)                # (B,)
    return nll, mask.sum(1), correct


@torch.no_grad()
def choice_accuracy(model, tok, task: Task, rows: list[Example], batch_size: int = 128, forward=None) -> float:
    """Accuracy when the model only has to rank the task's possible answers (by total log-prob).

    This is the number that "chance" (1 / number of answers) is comparable to: a model that never
    says " positive" still picks whichever of " positive"/" negative" it finds likelier.
    """
    device = next(model.parameters()).device
    pairs = [Example(ex.prompt, ans) for ex in rows for ans in task.answers]
    scores = []
    for i in range(0, len(pairs), batch_size):
        batch = encode(tok, pairs[i: i + batch_size], device)
        logits = forward(batch) if forward else model(input_ids=batch["input_ids"],
                                                      attention_mask=batch["attention_mask"]).logits
        nll, _, _ = answer_metrics(logits, batch["labels"])
        scores.append(-nll)
    best = torch.cat(scores).view(len(rows), len(task.answers)).argmax(1)          # (N,)
    truth = torch.tensor([task.answers.index(ex.answer) for ex in rows], device=best.device)
    return (best == truth).float().mean().item()


@torch.no_grad()
def evaluate(model, tok, task: Task, limit: int | None = None, batch_size: int = 64,
             forward=None, choices: bool = False) -> dict[str, float]:
    """Eval loss (mean NLL per answer token) and exact-match accuracy on the eval split.

    ``forward(batch) -> logits`` lets a method (e.g. prompt tuning) supply its own forward pass.
    ``choices=True`` adds ``choice_accuracy`` (rank the possible answers; comparable to chance).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = task.eval[:limit] if limit else task.eval
    nll_sum, tok_sum, right = 0.0, 0, 0
    for i in range(0, len(rows), batch_size):
        batch = encode(tok, rows[i: i + batch_size], device)
        logits = forward(batch) if forward else model(input_ids=batch["input_ids"],
                                                      attention_mask=batch["attention_mask"]).logits
        nll, count, correct = answer_metrics(logits, batch["labels"])
        nll_sum += nll.sum().item()
        tok_sum += count.sum().item()
        right += correct.sum().item()
    out = {"eval_loss": nll_sum / max(tok_sum, 1), "eval_accuracy": right / max(len(rows), 1)}
    if choices:
        out["choice_accuracy"] = choice_accuracy(model, tok, task, rows, forward=forward)
    model.train(was_training)
    return out
