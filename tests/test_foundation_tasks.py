"""Task generators: deterministic, disjoint splits, labels only on the answer tokens."""
import torch

from labs.base import load_base
from labs.tasks import TASKS, answer_metrics, encode, get_task


def test_tasks_are_deterministic_and_split():
    for name in TASKS:
        a, b = get_task(name), get_task(name)
        assert a.train == b.train and a.eval == b.eval
        assert len(a.train) >= 100 and len(a.eval) >= 40
        assert not set(a.train) & set(a.eval), f"{name}: eval examples leak into train"
        assert {ex.answer for ex in a.eval} <= set(a.answers)
        assert 0 < a.chance < 1


def test_sentiment_negation_flips_label():
    task = get_task("sentiment")
    negated = [ex for ex in task.train if " not " in ex.prompt]
    assert 0.3 < len(negated) / len(task.train) < 0.7
    for ex in negated[:50]:
        word = ex.prompt.split(" not ")[1].split()[0].rstrip(".")
        from labs.tasks import NEGATIVE, POSITIVE
        assert ex.answer == (" negative" if word in POSITIVE else " positive")


def test_facts_eval_uses_unseen_phrasing_of_seen_facts():
    task = get_task("facts")
    train_prompts = {ex.prompt for ex in task.train}
    for ex in task.eval:
        assert ex.prompt not in train_prompts
        person = ex.prompt.split("knows that ")[1].split(" lives")[0]
        assert any(person in t.prompt and t.answer == ex.answer for t in task.train)


def test_encode_masks_everything_but_the_answer():
    _, tok = load_base()
    task = get_task("facts")
    batch = encode(tok, task.train[:4])
    for row, ex in zip(range(4), task.train[:4]):
        ids = batch["labels"][row]
        answer_ids = ids[ids != -100].tolist()
        assert tok.decode(answer_ids) == ex.answer


def test_answer_metrics_exact_match():
    labels = torch.tensor([[-100, -100, 5, 6], [-100, -100, 7, -100]])   # (B=2, T=4)
    logits = torch.full((2, 4, 10), -5.0)
    logits[0, 1, 5] = logits[0, 2, 6] = 5.0        # row 0: predicts 5 then 6 → right
    logits[1, 1, 3] = 5.0                          # row 1: predicts 3, wants 7 → wrong
    nll, count, correct = answer_metrics(logits, labels)
    assert correct.tolist() == [True, False]
    assert count.tolist() == [2, 1]
    assert nll[0] < 0.01 < nll[1]


def test_choice_accuracy_of_the_base_is_near_chance():
    """Zero-shot, the pretrained base ranks the possible answers about as well as a coin/die."""
    from labs.tasks import evaluate

    model, tok = load_base()
    for name in TASKS:
        task = get_task(name)
        r = evaluate(model, tok, task, choices=True)
        assert r["eval_accuracy"] <= 0.2, name                      # never produces the exact answer
        assert abs(r["choice_accuracy"] - task.chance) < 0.25, (name, r)
