"""A LoRA adapter trained by our loop on the bundled base, saved in PEFT format, loads in peft with the same
eval metric (the CLI path the lead wires: lora.apply -> labs.train.train -> io.save_lora_peft)."""
from __future__ import annotations

from peft import PeftModel

from labs.base import load_base
from labs.methods import io, lora
from labs.tasks import evaluate, get_task
from labs.train import TrainConfig, train


def test_trained_adapter_gives_same_metric_in_peft(tmp_path):
    model, tok = load_base()
    task = get_task("sentiment")
    lora.apply(model, r=4, lora_alpha=8, target_modules="all-linear", use_dora=False)
    cfg = TrainConfig(steps=2, batch_size=4, lr=5e-3, warmup=1, eval_every=100, eval_limit=8, device="cpu")
    train(model, tok, task, cfg)
    io.save_lora_peft(model, tmp_path)
    ours = evaluate(model.eval(), tok, task, limit=8)
    base, _ = load_base()
    pm = PeftModel.from_pretrained(base, str(tmp_path)).eval()
    theirs = evaluate(pm, tok, task, limit=8)
    assert abs(ours["eval_loss"] - theirs["eval_loss"]) <= 1e-5
    assert ours["eval_accuracy"] == theirs["eval_accuracy"]
    untrained = evaluate(load_base()[0], tok, task, limit=8)
    assert abs(untrained["eval_loss"] - ours["eval_loss"]) > 1e-3        # training changed something
