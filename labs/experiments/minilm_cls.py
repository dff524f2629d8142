"""Lab `minilm-cls`: fine-tune a real pretrained model — all-MiniLM-L6-v2 — to classify a question by PEFT topic.

Data: the project's own flashcard questions (content/cards/<topic>.yaml, `en.q`), label = the file's topic;
a stratified held-out split (every topic keeps ≥ 1 question for eval). Model: the BERT encoder, the model
card's mean pooling and a linear head (the head always trains, as peft's `modules_to_save`):

    question ──BertModel──► h (B, T, 384) ──mean over mask──► e (B, 384) ──classifier──► logits (B, C)

Three variants, one training loop (labs.train.train), same data, steps and seed:
    full    every weight trains
    lora    labs.methods.lora on query/key/value/attention.output.dense/intermediate.dense/output.dense + head
    qlora   labs.methods.qlora: those linears stored in NF4 (peftlab_kernels.nf4), LoRA on top + head

How a classifier rides the causal-LM loop: each example is prompt = question, answer = " <topic>", and the
tokenizer wrapper maps the answer to a single id = the class index. The forward hook hides the answer
from the encoder (attention only over prompt tokens) and writes the C class logits at the position that
"predicts" the answer, so the loop's answer-token cross-entropy IS the classification cross-entropy and its
exact-match accuracy IS classification accuracy.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch
from torch import nn

from labs.experiments import Context, Lab
from labs.params import Param
from labs.tasks import Example, Task
from labs.train import Hooks, TrainConfig, train

CARDS_DIR = Path(__file__).resolve().parents[2] / "content" / "cards"
VARIANTS = ("full", "lora", "qlora")
TARGETS = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]

PARAMS = [
    Param("methods", "choice", "all", choices=("all", "full", "lora", "qlora"), help="which variants to train"),
    Param("topics", "int", 6, lo=2, hi=16, help="how many card topics to classify (those with most cards)"),
    Param("steps", "int", 20, lo=1, hi=300, gpu_hi=3000, help="optimizer steps per variant"),
    Param("batch_size", "int", 16, lo=1, hi=64, gpu_hi=256, help="questions per step"),
    Param("lr", "float", 1e-4, lo=1e-6, hi=1e-1, log=True, help="learning rate of the encoder weights (full FT)"),
    Param("lora_lr", "float", 2e-3, lo=1e-6, hi=1e-1, log=True, help="learning rate of A, B and the head"),
    Param("r", "int", 8, lo=1, hi=64, help="LoRA rank"),
    Param("max_length", "int", 32, lo=8, hi=128, help="question tokens kept (truncation)"),
    Param("eval_share", "float", 0.25, lo=0.1, hi=0.5, help="share of each topic's questions held out"),
    Param("seed", "int", 0, lo=0, hi=2**31 - 1, help="random seed (split, init, batches)"),
]


# ---------------------------------------------------------------------------------------------------
# Data: card questions → topics
# ---------------------------------------------------------------------------------------------------
def card_questions(cards_dir: Path = CARDS_DIR) -> dict[str, list[str]]:
    """{topic: [English question, …]} parsed straight from the card YAML (labs never import app)."""
    import yaml

    out: dict[str, list[str]] = {}
    for path in sorted(cards_dir.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        topic = doc.get("topic")
        qs = [c["en"]["q"] for c in doc.get("cards", []) if isinstance(c.get("en"), dict) and c["en"].get("q")]
        if topic and qs:
            out.setdefault(topic, []).extend(qs)
    if not out:
        raise FileNotFoundError(f"no cards with topic and en.q under {cards_dir}")
    return out


def topic_task(n_topics: int, eval_share: float, seed: int = 0) -> Task:
    """The `n_topics` topics with most questions; per topic a `eval_share` held-out slice (≥ 1 each side)."""
    by_topic = card_questions()
    if not 2 <= n_topics <= len(by_topic):
        raise ValueError(f"topics = {n_topics} is out of range: allowed 2..{len(by_topic)} (topics with cards)")
    chosen = sorted(sorted(by_topic, key=lambda k: (-len(by_topic[k]), k))[:n_topics])
    rng = random.Random(seed)
    train_rows, eval_rows = [], []
    for topic in chosen:
        qs = sorted(by_topic[topic])
        rng.shuffle(qs)
        k = min(len(qs) - 1, max(1, round(eval_share * len(qs))))
        eval_rows += [Example(q, " " + topic) for q in qs[:k]]
        train_rows += [Example(q, " " + topic) for q in qs[k:]]
    rng.shuffle(train_rows)
    return Task("card-topics", train=train_rows, eval=eval_rows, answers=[" " + t for t in chosen],
                description=f"flashcard question → one of {n_topics} PEFT topics")


class LabelTokenizer:
    """What labs.tasks.encode needs: prompts → BERT wordpieces ([CLS] … [SEP]), an answer → its class id."""

    def __init__(self, tok, answers: list[str], max_length: int):
        self.tok, self.max_length = tok, max_length
        self.label_id = {a: i for i, a in enumerate(answers)}
        self.pad_token_id = tok.pad_token_id

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        if text in self.label_id:
            return {"input_ids": [self.label_id[text]]}
        return {"input_ids": self.tok(text, truncation=True, max_length=self.max_length)["input_ids"]}


# ---------------------------------------------------------------------------------------------------
# Model: encoder + mean pooling + head, and the forward the loop calls
# ---------------------------------------------------------------------------------------------------
class MiniLMClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, n_classes: int):
        super().__init__()
        self.encoder = encoder
        self.classifier = nn.Linear(encoder.config.hidden_size, n_classes)    # (C, 384)

    def get_output_embeddings(self) -> nn.Module:
        """The head: `target_modules="all-linear"` and QLoRA's quantization leave it out (as for an LM head)."""
        return self.classifier

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        from labs.minilm import encode_batch

        return self.classifier(encode_batch(self.encoder, {"input_ids": input_ids, "attention_mask": attention_mask}))


def class_forward(model: MiniLMClassifier):
    """batch → (B, T, C) logits for labs.train: class logits at the position before the answer id, 0 elsewhere.
    Rows that differ only in their answer (choice accuracy) are encoded once (torch.unique)."""
    def forward(batch: dict) -> torch.Tensor:
        labels, mask = batch["labels"], batch["attention_mask"]
        keep = (labels == -100) & (mask == 1)                                  # (B, T) question tokens only
        ids = batch["input_ids"] * keep
        uniq, inv = torch.unique(torch.cat([ids, keep.long()], 1), dim=0, return_inverse=True)
        T = ids.shape[1]
        logits = model(uniq[:, :T], uniq[:, T:])[inv]                          # (B, C)
        pos = (labels != -100).long().argmax(1) - 1                            # (B,) predicts the answer id
        out = logits.new_zeros(ids.shape[0], T, logits.shape[1])              # (B, T, C)
        out[torch.arange(ids.shape[0]), pos] = logits
        return out
    return forward


def build(variant: str, n_classes: int, r: int, seed: int) -> MiniLMClassifier:
    from labs.methods import lora, qlora
    from labs.minilm import load_minilm

    encoder, _ = load_minilm()
    torch.manual_seed(seed)
    model = MiniLMClassifier(encoder, n_classes)
    if variant == "lora":
        lora.apply(model, r=r, lora_alpha=2 * r, target_modules=TARGETS)
    elif variant == "qlora":
        qlora.apply(model, r=r, lora_alpha=2 * r, target_modules=TARGETS)
    elif variant == "full":
        model.requires_grad_(True)
    else:
        raise ValueError(f"methods = {variant!r} is not allowed: allowed {', '.join(VARIANTS)}")
    model.classifier.requires_grad_(True)
    return model


def param_groups(model: nn.Module, variant: str, lr: float, lora_lr: float) -> list[dict]:
    """Full FT: encoder at lr, head at lora_lr. LoRA/QLoRA: A, B and head at lora_lr."""
    head = list(model.classifier.parameters())
    rest = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("classifier.")]
    return [{"params": rest, "lr": lr if variant == "full" else lora_lr}, {"params": head, "lr": lora_lr}]


# ---------------------------------------------------------------------------------------------------
# The lab
# ---------------------------------------------------------------------------------------------------
def run(p: dict, ctx: Context) -> dict:
    from labs.minilm import load_minilm

    variants = VARIANTS if p["methods"] == "all" else (p["methods"],)
    task = topic_task(p["topics"], p["eval_share"], p["seed"])
    _, tok = load_minilm()
    ltok = LabelTokenizer(tok, task.answers, p["max_length"])
    results = {}
    for i, variant in enumerate(variants):
        model = build(variant, len(task.answers), p["r"], p["seed"])

        def emit(event: dict, i=i, variant=variant) -> None:
            frac = event.get("step", 0) / max(p["steps"], 1) if event["type"] in ("step", "eval") else 0.0
            ctx.emit({**event, "series": variant, "progress": (i + min(frac, 1.0)) / len(variants)})

        cfg = TrainConfig(steps=p["steps"], batch_size=p["batch_size"], lr=p["lora_lr"], eval_every=p["steps"],
                          seed=p["seed"], device=ctx.device, warmup=max(1, p["steps"] // 10))
        res = train(model, ltok, task, cfg, param_groups=param_groups(model, variant, p["lr"], p["lora_lr"]),
                    on_event=emit, should_stop=ctx.should_stop, hooks=Hooks(forward=class_forward(model)))
        results[variant] = {k: v for k, v in res.items() if k != "evals"}
        results[variant]["history"] = [{k: h[k] for k in ("step", "loss", "elapsed")} for h in res["history"]]
        if variant == "qlora":
            from labs.methods.qlora import base_bits

            results[variant]["base_bits"] = base_bits(model)
        del model
    return {"model": "minilm", "model_name": "sentence-transformers/all-MiniLM-L6-v2", "task": task.description,
            "topics": [a.strip() for a in task.answers], "n_train": len(task.train), "n_eval": len(task.eval),
            "chance": task.chance, "variants": results}


LAB = Lab("minilm-cls", PARAMS, run, quick={}, tiny={"steps": 2, "topics": 3, "batch_size": 4, "max_length": 16})
