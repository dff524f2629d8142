"""labs.methods.new_tokens on a tiny Llama: LoRA alone gives new token rows no gradient; trainable_token_indices
trains exactly those rows (input and tied output); modules_to_save trains a full copy that a tied head reads."""
from __future__ import annotations

import torch

from labs.base import tiny_llama
from labs.methods import lora, new_tokens

NEW = [120, 121, 122]            # the last rows of the tiny vocabulary play the new tokens


def _loss(model, ids):
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    return out.loss


def _ids():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 120, (2, 9), generator=g)
    ids[:, 2], ids[:, 5], ids[:, 8] = NEW[0], NEW[1], NEW[2]
    return ids


def test_lora_alone_gives_the_new_rows_no_parameter():
    model = lora.apply(tiny_llama(tie_word_embeddings=True), r=2, lora_alpha=4, target_modules="all-linear")
    before = new_tokens.new_rows(model, NEW)
    _loss(model, _ids())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)          # nothing in embed_tokens or lm_head
    assert model.get_input_embeddings().weight.grad is None
    assert torch.equal(new_tokens.new_rows(model, NEW), before)


def test_trainable_tokens_train_only_the_new_rows_in_and_out():
    model = tiny_llama(tie_word_embeddings=True)
    ref = model(input_ids=_ids()).logits.detach()
    lora.apply(model, r=2, lora_alpha=4, target_modules=["q_proj"])
    new_tokens.apply_trainable_tokens(model, NEW)
    assert torch.allclose(model(input_ids=_ids()).logits, ref, atol=1e-6)       # starts exactly at the base
    delta = model.get_input_embeddings().trainable_tokens_delta
    assert delta.shape == (3, 64) and model.get_output_embeddings().trainable_tokens_delta is delta
    opt = torch.optim.SGD([delta], lr=1.0)
    _loss(model, _ids())
    opt.step()
    moved = new_tokens.new_rows(model, NEW)
    head_rows = model.get_output_embeddings().merged_weight()[NEW]
    assert torch.equal(moved, head_rows.detach())                                # tied: the head reads the same rows
    assert (moved - model.get_input_embeddings().base_layer.weight[NEW]).abs().min() > 0
    assert model.get_input_embeddings().base_layer.weight.grad is None           # the other rows stay frozen


def test_modules_to_save_trains_a_copy_the_tied_head_reads():
    model = lora.apply(tiny_llama(tie_word_embeddings=True), r=2, lora_alpha=4, target_modules=["q_proj"])
    new_tokens.apply_modules_to_save(model, ["embed_tokens"])
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    copy = emb.modules_to_save["default"].weight
    assert copy.requires_grad and not emb.original_module.weight.requires_grad
    assert head.modules_to_save["default"].weight is copy
    with torch.no_grad():
        copy[NEW[2]] += 5.0
    x = torch.randn(1, 1, 64)
    assert torch.allclose(head(x)[0, 0, NEW[2]], (x[0, 0] * copy[NEW[2]]).sum(), atol=1e-5)
    assert not torch.equal(copy, emb.original_module.weight)                     # the original is kept intact
    total_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lora_only = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "lora_" in n)
    assert total_trainable - lora_only == 128 * 64                               # the whole (tied) embedding, once
