"""Guards for the content review (issue 21): each corrected statement stays corrected, in both languages.

A wrong claim comes back → the forbidden phrase or the missing anchor fails here. The NF4 levels quoted on the
math page are checked against the codebook our kernels compute, not against a pasted list.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from peftlab_kernels.codebooks import nf4_codebook

ROOT = Path(__file__).resolve().parents[2] / "content"
LANGS = ("en", "zh")


def _cards() -> dict[str, dict]:
    out = {}
    for path in sorted((ROOT / "cards").glob("*.yaml")):
        for card in yaml.safe_load(path.read_text(encoding="utf-8"))["cards"]:
            out[card["id"]] = card
    return out


CARDS = _cards()


def card_text(card_id: str, lang: str) -> str:
    """Question, answer, points and every option (with its why) of one card in one language."""
    card = CARDS[card_id]
    side = card[lang]
    parts = [side["q"], side["a"], *side.get("points", [])]
    for opt in card.get("options", []):
        parts += [opt[lang], opt.get("why", {}).get(lang, "")]
    return "\n".join(parts)


def page(page_id: str, section: str, lang: str) -> str:
    return (ROOT / "pages" / page_id / f"{section}.{lang}.md").read_text(encoding="utf-8")


# (card or page, forbidden phrases per language, required anchors per language)
CARD_FIXES = {
    "qlora-004": (  # MMLU parity is with 16-bit LoRA (Table 4); full FT only RoBERTa/T5 (Table 3), Alpaca RougeL (Fig. 2)
        {"en": ["matched 16-bit full fine-tuning and 16-bit LoRA", "full fine-tuning / LoRA within noise (MMLU"],
         "zh": ["与 16 位全量微调和 16 位 LoRA 的差距", "全量微调 / LoRA 差距在噪声内（MMLU"]},
        {"en": ["Table 4", "Table 3", "Fig. 2", "RoBERTa", "T5", "not on MMLU"],
         "zh": ["Table 4", "Table 3", "图 2", "RoBERTa", "T5", "并不是在 MMLU 上"]}),
    "nf4-006": ({"en": ["FP8 with block size"], "zh": ["FP8，块大小"]},
                {"en": ["dynamic", "quantize_blockwise"], "zh": ["动态", "quantize_blockwise"]}),
    "nf4-009": ({"en": ["(scales in FP8)"], "zh": ["（缩放用 FP8）"]},
                {"en": ["dynamic blockwise"], "zh": ["动态分块"]}),
    "adapters-006": ({"en": ["(e.g. Pfeiffer's)"], "zh": ["（如 Pfeiffer）加了"]},
                     {"en": ["Bapna & Firat (2019)", "Pfeiffer's adapter has no internal LayerNorm"],
                      "zh": ["Bapna & Firat（2019）", "Pfeiffer 的 adapter 内部也没有 LayerNorm"]}),
    "rslora-002": ({"en": ["its size grows like √r"], "zh": ["其大小按 √r 增长"]},
                   {"en": ["AᵀA ≈ rσ²I", "γ_r²·r"], "zh": ["AᵀA ≈ rσ²I", "γ_r²·r"]}),
    "lora-hparams-007": ({"en": ["cannot be damaged by a large step", "cannot destroy pre-trained weights"],
                          "zh": ["大步长也不会像全量微调那样破坏它", "大步长不会破坏预训练权重"]},
                         {"en": ["forgetting"], "zh": ["遗忘"]}),
}

PAGE_FIXES = {
    ("serving", "interview"): ({"en": ["usually dominates memory"], "zh": ["占显存大头的通常是 KV cache"]},
                               {"en": ["0.5 MiB", "25,700", "large batch × context"],
                                "zh": ["0.5 MiB", "25,700", "batch × 上下文很大"]}),
    ("serving", "math"): ({"en": ["Punica's two kernels"], "zh": ["Punica 的两个 kernel"]},
                          {"en": ["Punica's paper contribution", "Punica's code base", "vLLM's later convention"],
                           "zh": ["Punica 论文的贡献", "Punica 的代码库", "vLLM 后来的约定"]}),
    ("lora", "interview"): ({"en": ["got the best result from adapting $W_q$ and $W_v$"],
                             "zh": ["同时适配 $W_q$ 和 $W_v$ 效果最好"]},
                            {"en": ["Table 5", "73.7", "91.3", "91.7", "$r = 2$"],
                             "zh": ["Table 5", "73.7", "91.3", "91.7", "$r = 2$"]}),
    ("lora", "math"): ({"en": [], "zh": []},
                       {"en": [r"A^\top A \approx r\sigma^2 I", "s^2 r", r"\Theta(1/\sqrt{r})"],
                        "zh": [r"A^\top A \approx r\sigma^2 I", "s^2 r", r"\Theta(1/\sqrt{r})"]}),
    ("why-peft", "interview"): ({"en": [], "zh": []},
                                {"en": ["cannot be damaged", "forget"], "zh": ["不会被破坏", "遗忘"]}),
    ("adalora", "interview"): ({"en": [], "zh": []},
                               {"en": ["update_and_allocate(global_step)", "custom loop"],
                                "zh": ["update_and_allocate(global_step)", "自定义循环"]}),
}


@pytest.mark.parametrize("card_id", sorted(CARD_FIXES))
@pytest.mark.parametrize("lang", LANGS)
def test_card_fix_holds(card_id, lang):
    text = card_text(card_id, lang)
    forbidden, required = CARD_FIXES[card_id]
    assert not [f for f in forbidden[lang] if f in text], f"{card_id}.{lang}: a corrected statement is back"
    assert not [r for r in required[lang] if r not in text], f"{card_id}.{lang}: the correction lost an anchor"


@pytest.mark.parametrize("key", sorted(PAGE_FIXES), ids=lambda k: "/".join(k))
@pytest.mark.parametrize("lang", LANGS)
def test_page_fix_holds(key, lang):
    text = page(*key, lang)
    forbidden, required = PAGE_FIXES[key]
    assert not [f for f in forbidden[lang] if f in text]
    assert not [r for r in required[lang] if r not in text]


@pytest.mark.parametrize("lang", LANGS)
def test_double_quant_code_is_never_called_fp8_in_nf4_cards(lang):
    """Every "FP8" in the NF4 deck is negated ("not IEEE FP8" / "不是 IEEE FP8")."""
    text = "\n".join(card_text(c, lang) for c in CARDS if c.startswith("nf4-"))
    negated = len(re.findall(r"(?:not|不是) IEEE FP8", text))
    assert text.count("FP8") == negated


@pytest.mark.parametrize("lang", LANGS)
def test_nf4_levels_quoted_on_math_page_are_the_codebook_rounded(lang):
    """Each 4-decimal level the page quotes equals a level of our NF4 codebook rounded to 4 places (−0.0911)."""
    text = page("nf4", "math", lang)
    quoted = [float(x) for x in re.findall(r"\$(-?0\.\d{4})\$", text)]
    levels = {round(v, 4) for v in nf4_codebook().tolist()}
    assert len(quoted) >= 4 and -0.0911 in quoted
    assert [q for q in quoted if q not in levels] == []
