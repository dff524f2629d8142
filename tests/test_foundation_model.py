"""The bundled base model: loads from disk with plain transformers, and is genuinely pretrained."""
import json
import math

import pytest
import torch

from labs.base import BASE_DIR, load_base, model_dir

RECORD = json.loads((BASE_DIR / "training.json").read_text())


def test_loads_with_auto_classes_from_the_folder():
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    model = AutoModelForCausalLM.from_pretrained(BASE_DIR, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(BASE_DIR, local_files_only=True)
    assert isinstance(model, LlamaForCausalLM)
    cfg = model.config
    assert cfg.num_key_value_heads < cfg.num_attention_heads, "GQA expected"
    assert tok.decode(tok("The list is sorted.")["input_ids"]) == "The list is sorted."
    size = sum(f.stat().st_size for f in BASE_DIR.iterdir())
    assert size <= 16 * 2**20, f"bundled model folder is {size / 2**20:.1f} MiB > 16 MiB"


def test_eval_loss_matches_the_recorded_figure_and_beats_untrained():
    from labs import corpus
    from labs.pretrain import PretrainConfig, eval_loss, eval_windows, split_ids

    model, tok = load_base()
    cfg = PretrainConfig(**RECORD["config"])
    ids = torch.tensor(tok(corpus.load())["input_ids"])
    _, held = split_ids(ids, cfg.seq_len)
    loss = eval_loss(model, eval_windows(held, cfg.seq_len, cfg.eval_windows))
    assert loss == pytest.approx(RECORD["eval_loss"], abs=2e-3)
    assert RECORD["untrained_eval_loss"] - loss > 2.5, "not far better than untrained (perplexity ratio > 12x)"
    assert loss < math.log(cfg.vocab_size) - 2.5


def test_env_var_and_path_override(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTLAB_MODEL", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="config.json"):
        model_dir()
    monkeypatch.setenv("PEFTLAB_MODEL", str(BASE_DIR))
    assert model_dir() == BASE_DIR
    assert model_dir(BASE_DIR) == BASE_DIR


def test_readme_records_corpus_command_time_and_losses():
    text = (BASE_DIR / "README.md").read_text()
    for needle in ("python -m labs pretrain", "PSF", f"{RECORD['eval_loss']:.4f}",
                   f"{RECORD['untrained_eval_loss']:.4f}", "training time"):
        assert needle in text


def test_pretraining_is_deterministic(tmp_path):
    """Two short runs of the same command with the same seed write identical weights and tokenizer."""
    from safetensors.torch import load_file

    from labs.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(steps=2, batch_size=2, eval_windows=4)
    a = pretrain(cfg, out_dir=tmp_path / "a", log=lambda *_: None)
    b = pretrain(cfg, out_dir=tmp_path / "b", log=lambda *_: None)
    assert a["eval_loss"] == b["eval_loss"]
    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (tmp_path / "a" / "tokenizer.json").read_text() == (tmp_path / "b" / "tokenizer.json").read_text()
