"""`python -m labs pretrain`: train the bundled base model from scratch, deterministically.

    corpus (labs/data/corpus.txt.gz, Python docs prose)
      → byte-level BPE tokenizer, vocab 4096
      → LlamaForCausalLM: 4 layers, hidden 256, 8 query heads / 4 KV heads (GQA), SwiGLU 640, tied embeddings
      → AdamW, cosine schedule, next-token loss on random 128-token windows (95% train / 5% eval by position)
      → labs/base_model/ {config.json, model.safetensors, tokenizer files, training.json, README.md}

The eval loss of the saved model and of the same architecture untrained are written to
``training.json``; the test suite reloads the model and checks the recorded figure.
"""
from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from labs import corpus

BASE_DIR = Path(__file__).resolve().parent / "base_model"
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]


@dataclass
class PretrainConfig:
    seed: int = 0
    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 640
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    num_key_value_heads: int = 4
    seq_len: int = 128
    batch_size: int = 32
    steps: int = 600
    lr: float = 3e-3
    warmup: int = 40
    weight_decay: float = 0.1
    eval_windows: int = 256
    threads: int = 1


def train_tokenizer(text: str, vocab_size: int):
    """Byte-level BPE (as GPT-2/Llama-3 use), trained on the corpus; deterministic for a given text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(text.split("\n"), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>")


def build_model(cfg: PretrainConfig, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    config = LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads, max_position_embeddings=512, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, rms_norm_eps=1e-5)
    return LlamaForCausalLM(config)


def split_ids(ids: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last 5% of the token stream is held out for eval."""
    cut = int(len(ids) * 0.95)
    return ids[:cut], ids[cut:]


def eval_windows(ids: torch.Tensor, seq_len: int, n: int) -> torch.Tensor:
    """Fixed, evenly spaced eval windows (n, T): the same ones every time."""
    starts = torch.linspace(0, len(ids) - seq_len - 1, n).long()
    return torch.stack([ids[s: s + seq_len] for s in starts])


@torch.no_grad()
def eval_loss(model, windows: torch.Tensor, batch: int = 64) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        w = windows[i: i + batch]
        out = model(input_ids=w, labels=w)  # HF shifts labels inside: T-1 next-token predictions
        total += out.loss.item() * len(w)
        count += len(w)
    return total / count


def pretrain(cfg: PretrainConfig | None = None, out_dir: Path = BASE_DIR, log=print) -> dict:
    cfg = cfg or PretrainConfig()
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    text = corpus.load()
    t0 = time.time()
    tok = train_tokenizer(text, cfg.vocab_size)
    ids = torch.tensor(tok(text)["input_ids"], dtype=torch.long)  # (N,)
    train_ids, eval_ids = split_ids(ids, cfg.seq_len)
    ev = eval_windows(eval_ids, cfg.seq_len, cfg.eval_windows)
    model = build_model(cfg, tok)
    untrained = eval_loss(model, ev)
    log(f"tokens: {len(ids):,} (train {len(train_ids):,}, eval {len(eval_ids):,}); params "
        f"{sum(p.numel() for p in model.parameters()):,}; untrained eval loss {untrained:.3f}")

    gen = torch.Generator().manual_seed(cfg.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / cfg.steps))) * 0.9 + 0.1 * min(1.0, (s + 1) / cfg.warmup))
    history = []
    model.train()
    for step in range(cfg.steps):
        starts = torch.randint(0, len(train_ids) - cfg.seq_len - 1, (cfg.batch_size,), generator=gen)
        x = torch.stack([train_ids[s: s + cfg.seq_len] for s in starts])  # (B, T)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == cfg.steps - 1:
            ev_loss = eval_loss(model, ev)
            model.train()
            history.append({"step": step, "train_loss": round(loss.item(), 4), "eval_loss": round(ev_loss, 4)})
            log(f"step {step:5d}  train {loss.item():.3f}  eval {ev_loss:.3f}  {time.time() - t0:.0f}s")
    seconds = time.time() - t0
    final = eval_loss(model, ev)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    record = {
        "config": asdict(cfg), "tokens": len(ids), "train_tokens_seen": cfg.steps * cfg.batch_size * cfg.seq_len,
        "params": sum(p.numel() for p in model.parameters()), "seconds": round(seconds, 1),
        "eval_loss": final, "eval_ppl": math.exp(final), "untrained_eval_loss": untrained,
        "untrained_eval_ppl": math.exp(untrained), "uniform_loss": math.log(cfg.vocab_size),
        "history": history, "corpus": json.loads(corpus.META.read_text())["sha256"],
        "torch": torch.__version__, "python": platform.python_version(),
        "machine": f"{platform.machine()}, {cfg.threads} torch thread(s), on a 2-core machine shared with other jobs",
    }
    (out_dir / "training.json").write_text(json.dumps(record, indent=1))
    return record


def write_readme(out_dir: Path, record: dict) -> None:
    """The model card beside the weights: corpus, command, time, and eval loss vs untrained."""
    cfg = record["config"]
    rows = "\n".join(f"| {h['step']} | {h['train_loss']:.3f} | {h['eval_loss']:.3f} |" for h in record["history"])
    text = f"""# PEFT Lab base model (bundled)

A small Llama (`LlamaForCausalLM`) trained from scratch by this repository, so every lab has a genuinely
pretrained model to quantize and fine-tune without any download. Load it with
`AutoModelForCausalLM.from_pretrained(this_folder)` / `AutoTokenizer.from_pretrained(this_folder)`,
or `labs.base.load_base()`.

| | |
|---|---|
| architecture | Llama: {cfg['num_hidden_layers']} layers, hidden {cfg['hidden_size']}, {cfg['num_attention_heads']} query heads / {cfg['num_key_value_heads']} KV heads (GQA), SwiGLU {cfg['intermediate_size']}, RMSNorm, RoPE, tied embeddings |
| parameters | {record['params']:,} (fp32, {record['params'] * 4 / 2**20:.1f} MiB) |
| tokenizer | byte-level BPE, vocab {cfg['vocab_size']}, trained on the same corpus |
| corpus | CPython's own documentation prose: `pydoc_data.topics` and standard-library docstrings (© Python Software Foundation, PSF License), {record['tokens']:,} tokens; snapshot `labs/data/corpus.txt.gz`, sha256 `{record['corpus'][:16]}…` (see `labs/corpus.py`) |
| command | `python -m labs pretrain` (seed {cfg['seed']}, {cfg['steps']} steps × {cfg['batch_size']} × {cfg['seq_len']} tokens = {record['train_tokens_seen']:,} tokens, AdamW lr {cfg['lr']}, cosine) |
| training time | {record['seconds']:.0f} s on {record['machine']} (torch {record['torch']}, Python {record['python']}) |
| eval loss (held-out last 5% of the corpus) | **{record['eval_loss']:.4f}** (perplexity {record['eval_ppl']:.1f}) |
| same architecture, untrained | {record['untrained_eval_loss']:.4f} (perplexity {record['untrained_eval_ppl']:.0f}); uniform guess ln({cfg['vocab_size']}) = {record['uniform_loss']:.4f} |

Training curve (eval on {cfg['eval_windows']} fixed held-out windows of {cfg['seq_len']} tokens):

| step | train loss | eval loss |
|---:|---:|---:|
{rows}

The run sees the training split about {record['train_tokens_seen'] / (record['tokens'] * 0.95):.1f} times; the gap between the last train
loss and the eval loss shows it starts to memorise — acceptable for a lab model, and the reason the run stops here.

The test suite reloads these weights and checks the eval loss above (`tests/test_foundation_model.py`).
"""
    (out_dir / "README.md").write_text(text)
