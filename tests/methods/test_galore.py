"""GaLore (labs.methods.galore): one step against Algorithm 2 written out by hand, the projector's refresh
schedule, the measured state bytes against AdamW's, and training through labs.train's loop."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from labs.methods import galore
from tests.methods.helpers import batch


def _grad_step(opt, w, g):
    w.grad = g.clone()
    opt.step()
    opt.zero_grad(set_to_none=True)


@pytest.mark.parametrize("shape", [(6, 10), (10, 6)])
def test_two_steps_follow_algorithm_2(shape):
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(shape))
    w0 = w.detach().clone()
    g1, g2 = torch.randn(shape), torch.randn(shape)
    lr, r, alpha, b1, b2, eps, wd = 0.1, 2, 0.25, 0.9, 0.999, 1e-8, 0.01
    opt = galore.GaLoreAdamW([{"params": [w], "rank": r, "update_proj_gap": 5, "scale": alpha}], lr=lr,
                             weight_decay=wd)
    _grad_step(opt, w, g1)
    _grad_step(opt, w, g2)
    # by hand: the projector comes from g1 only (refresh every 5 steps); Adam with bias correction in r dims
    U, _, Vh = torch.linalg.svd(g1, full_matrices=False)
    left = shape[0] <= shape[1]
    P = U[:, :r] if left else Vh[:r].T
    proj = (lambda g: P.T @ g) if left else (lambda g: g @ P)
    back = (lambda n: P @ n) if left else (lambda n: n @ P.T)
    ref, m, v = w0.clone(), 0, 0
    for t, g in ((1, g1), (2, g2)):
        R = proj(g)
        m, v = b1 * m + (1 - b1) * R, b2 * v + (1 - b2) * R * R
        step = lr * (1 - b2 ** t) ** 0.5 / (1 - b1 ** t)
        ref = ref - step * alpha * back(m / (v.sqrt() + eps))
        ref = ref - lr * wd * ref
    assert torch.allclose(w.detach(), ref, atol=1e-6)
    st = opt.state[w]
    assert st["exp_avg"].shape == ((r, shape[1]) if left else (shape[0], r))
    assert torch.equal(st["projector"], P)


def test_projector_refreshes_every_gap_steps():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(8, 12))
    opt = galore.GaLoreAdamW([{"params": [w], "rank": 3, "update_proj_gap": 3, "scale": 1.0}], lr=1e-2)
    seen = []
    for _ in range(7):
        _grad_step(opt, w, torch.randn(8, 12))
        seen.append(opt.state[w]["projector"].clone())
    changed = [not torch.equal(seen[i], seen[i - 1]) for i in range(1, 7)]
    assert changed == [False, False, True, False, False, True]          # new SVD at steps 4 and 7 (0-based 3, 6)
    # measured state: moments (3, 12) twice + projector (8, 3), fp32; the step counter is not a tensor
    assert galore.state_bytes(opt) == {"moments": 2 * 3 * 12 * 4, "projectors": 8 * 3 * 4, "total": 2 * 3 * 12 * 4 + 8 * 3 * 4}


def test_state_is_smaller_than_adamw_and_training_lowers_the_loss():
    from labs.base import BASE_DIR, tiny_llama
    from labs.hf import load_tokenizer
    from labs.tasks import get_task
    from labs.train import TrainConfig, make_optimizer, train

    tok = load_tokenizer(BASE_DIR)
    model, twin = tiny_llama(vocab_size=len(tok)), tiny_llama(vocab_size=len(tok))
    groups = galore.param_groups(model, rank=4, update_proj_gap=10, scale=0.25)
    assert all(p.requires_grad for p in model.parameters())
    names = {n for n, p in model.named_parameters() if any(p is q for q in groups[0]["params"])}
    assert names and all(n.endswith("proj.weight") for n in names)     # the head and embeddings stay AdamW
    cfg = TrainConfig(steps=8, batch_size=8, eval_every=8, eval_limit=16, lr=1e-2, warmup=1, optimizer="galore")
    res = train(model, tok, get_task("topic"), cfg, param_groups=groups)
    assert res["final"]["eval_loss"] < res["base"]["eval_loss"]
    full = make_optimizer(twin.requires_grad_(True), TrainConfig())
    ids, mask = batch()
    twin(input_ids=ids, attention_mask=mask).logits.sum().backward()
    full.step()
    adam = sum(v.numel() * v.element_size() for s in full.state.values() for v in s.values() if v.dim())
    proj_params = sum(p.numel() for p in groups[0]["params"])
    # the projected matrices' moments shrink from 2·m·n to 2·r·max… : measured state well under AdamW's
    assert res["memory"]["optimizer_bytes"] < adam - 4 * proj_params
