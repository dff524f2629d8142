"""Concept-page prose: content/pages/<page_id>/<section>.<lang>.md.

Every page listed in content/pages/index.yaml must have every section in both
languages; each section must be a readable length, have balanced LaTeX, and the
two languages must carry the same numbers and the same display equations. A
per-page list of key terms pins the facts each page must keep: delete the fact,
and the test fails.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2] / "content" / "pages"
INDEX = yaml.safe_load((ROOT / "index.yaml").read_text(encoding="utf-8"))
SECTIONS = INDEX["sections"]
LANGS = ("en", "zh")
PROSE = [p for p in INDEX["pages"] if p.get("prose")]  # concept pages with Markdown sections
PAGES = [p["id"] for p in PROSE]
EXPECTED_PAGES = {"why-peft", "lora", "nf4", "qlora", "dora", "adalora",
                  "soft-prompts", "adapters", "serving"}

# Word budget per section. English: whitespace words. Chinese: CJK characters
# plus Latin/number tokens, so the zh budget is the en one scaled by ~1.6 CJK
# characters per English word (the ratio of our own paired texts).
EN_WORDS = (80, 400)
ZH_UNITS = (120, 900)

# Facts that must survive edits. Each entry is a group of alternatives; at least
# one alternative must occur somewhere in the page (all sections joined).
COVERAGE: dict[str, dict[str, list[tuple[str, ...]]]] = {
    "why-peft": {
        "en": [("16 bytes",), ("8 bytes",), ("112 GB",), ("140 GB",), ("Adam",),
               ("catastrophic forgetting",), ("master",), ("activation",), ("1%",)],
        "zh": [("16 字节",), ("8 字节",), ("112 GB",), ("140 GB",), ("Adam",),
               ("灾难性遗忘",), ("主权重",), ("激活",), ("1%",)],
    },
    "lora": {
        "en": [("B = 0", "B=0"), ("α/r", r"\alpha/r", r"\alpha / r"), ("all-linear",),
               ("merge",), ("LoRA+",), ("rsLoRA",), (r"\sqrt{r}",), ("16",),
               ("Kaiming",), ("both zero", "both-zero"), ("target_modules",)],
        "zh": [("B = 0", "B=0"), ("α/r", r"\alpha/r", r"\alpha / r"), ("all-linear",),
               ("合并",), ("LoRA+",), ("rsLoRA",), (r"\sqrt{r}",), ("16",),
               ("Kaiming",), ("全零",), ("target_modules",)],
    },
    "nf4": {
        "en": [("4.127",), ("0.373",), ("0.5",), ("256",), ("64",), ("absmax",),
               ("quantile",), ("INT4",), ("FP4",), ("0.9677",), ("dynamic",)],
        "zh": [("4.127",), ("0.373",), ("0.5",), ("256",), ("64",), ("absmax",),
               ("分位",), ("INT4",), ("FP4",), ("0.9677",), ("动态",)],
    },
    "qlora": {
        "en": [("paged",), ("unified memory",), ("Guanaco",), ("48 GB",), ("MMLU",),
               ("Dettmers",), ("merge",), ("BF16", "bf16"), ("requantiz", "re-quantiz")],
        "zh": [("分页",), ("统一内存",), ("Guanaco",), ("48 GB",), ("MMLU",),
               ("Dettmers",), ("合并",), ("BF16", "bf16"), ("重新量化",)],
    },
    "dora": {
        "en": [("magnitude",), ("direction",), (r"\lVert",), ("per output",),
               ("column",), ("78.4",), ("detach",), ("merge",)],
        "zh": [("幅度",), ("方向",), (r"\lVert",), ("输出",), ("列",), ("78.4",),
               ("detach", "常数"), ("合并",)],
    },
    "adalora": {
        "en": [(r"P \Lambda Q", r"P\Lambda Q"), (r"\bar{I}",), (r"\bar{U}",), ("cubic",),
               ("orthogonal",), ("target_r",), ("FFN",), ("budget",)],
        "zh": [(r"P \Lambda Q", r"P\Lambda Q"), (r"\bar{I}",), (r"\bar{U}",), ("三次",),
               ("正交",), ("target_r",), ("FFN",), ("预算",)],
    },
    "soft-prompts": {
        "en": [("Lester",), ("Li & Liang", "Li and Liang"), ("P-tuning v2", "P-Tuning v2"),
               ("10B", "11B"), ("KV width", "n_kv_heads"), ("reparameteri",),
               ("context window",), ("cannot be merged", "can't be merged")],
        "zh": [("Lester",), ("Li & Liang", "Li and Liang"), ("P-tuning v2", "P-Tuning v2"),
               ("10B", "11B"), ("KV 宽度",), ("重参数化",), ("上下文窗口",), ("无法合并", "不能合并")],
    },
    "adapters": {
        "en": [("Houlsby",), ("1,228,800",), ("4 L d r", "4Ldr", r"4 \cdot L"), ("zero-init",),
               ("gate",), ("latency",), ("LayerNorm",), ("bottleneck",)],
        "zh": [("Houlsby",), ("1,228,800",), ("4 L d r", "4Ldr", r"4 \cdot L"), ("零初始化",),
               ("门控",), ("延迟",), ("LayerNorm",), ("瓶颈",)],
    },
    "serving": {
        "en": [("Punica",), ("SGMV",), ("BGMV",), ("S-LoRA",), ("Unified Paging",),
               ("vLLM",), ("enable_lora",), ("max_loras",), ("LRU",), ("merge",)],
        "zh": [("Punica",), ("SGMV",), ("BGMV",), ("S-LoRA",), ("Unified Paging",),
               ("vLLM",), ("enable_lora",), ("max_loras",), ("LRU",), ("合并",)],
    },
}

EXPECTED_PAGES |= {"more-methods"}
COVERAGE["more-methods"] = {
    "en": [("IA³",), ("VeRA",), ("PiSSA",), ("LoftQ",), ("GaLore",), ("65.5%",), ("72.86%",), ("disable_adapter",),
           ("intruder dimensions",), ("2410.21228",), ("2305.18290",), ("init_lora_weights",), ("full-rank",)],
    "zh": [("IA³",), ("VeRA",), ("PiSSA",), ("LoftQ",), ("GaLore",), ("65.5%",), ("72.86%",), ("disable_adapter",),
           ("入侵维度",), ("2410.21228",), ("2305.18290",), ("init_lora_weights",), ("满秩",)],
}

EXPECTED_PAGES |= {"merging"}
COVERAGE["merging"] = {
    "en": [("task vector",), ("TIES",), ("DARE",), ("1-p", "1 - p", "1 − p"), ("elect",), ("cat",), ("svd",),
           ("add_weighted_adapter",), ("modules_to_save",), ("trainable_token_indices",), ("Ilharco",), ("Yadav",)],
    "zh": [("任务向量",), ("TIES",), ("DARE",), ("1-p", "1 - p", "1 − p"), ("选符号",), ("cat",), ("svd",),
           ("add_weighted_adapter",), ("modules_to_save",), ("trainable_token_indices",), ("Ilharco",), ("Yadav",)],
}

EXPECTED_PAGES |= {"scaling"}
COVERAGE["scaling"] = {
    "en": [("DDP",), ("ZeRO-1",), ("ZeRO-3",), ("all-gather",), ("reduce-scatter",), ("fully_shard",),
           ("reshard_after_forward",), ("quant_storage",), ("3Ψ",), ("24 GB",), ("padding", "padded")],
    "zh": [("DDP",), ("ZeRO-1",), ("ZeRO-3",), ("all-gather",), ("reduce-scatter",), ("fully_shard",),
           ("reshard_after_forward",), ("quant_storage",), ("3Ψ",), ("24 GB",), ("填充",)],
}

CJK = re.compile(r"[\u3400-\u9fff]")
LATIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.,_+\-/]*")
# Numbers that carry a claim: decimals (4.127), grouped thousands (1,228,800)
# and integers of three or more digits (256). Small integers are too common in
# ordinary prose to pair reliably.
KEY_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+\.\d+|\d{3,})(?![\w])")


def section_path(page: str, section: str, lang: str) -> Path:
    return ROOT / page / f"{section}.{lang}.md"


def read(page: str, section: str, lang: str) -> str:
    return section_path(page, section, lang).read_text(encoding="utf-8")


def page_text(page: str, lang: str) -> str:
    return "\n".join(read(page, s, lang) for s in SECTIONS)


def zh_units(text: str) -> int:
    return len(CJK.findall(text)) + len(LATIN.findall(CJK.sub(" ", text)))


def test_index_lists_every_page_with_metadata():
    assert set(PAGES) == EXPECTED_PAGES, set(PAGES) ^ EXPECTED_PAGES
    assert len(PAGES) == len(set(PAGES)), "duplicate page id in index.yaml"
    assert SECTIONS == ["why", "math", "picture", "lab", "seen", "interview"]
    for page in PROSE:
        for field in ("title", "summary"):
            for lang in LANGS:
                assert page[field][lang].strip(), (page["id"], field, lang)
        assert page["seed_sections"], page["id"]
        assert page["card_topics"], page["id"]


def test_seed_sections_are_all_covered():
    covered = {s for p in PROSE for s in map(str, p["seed_sections"])}
    wanted = {"1", "2", "3", "4", "5", "6", "7", "8", "10"} | {f"11.Q{i}" for i in range(1, 7)}
    assert wanted <= covered, wanted - covered


def test_no_stray_files():
    allowed = {section_path(p, s, lang) for p in PAGES for s in SECTIONS for lang in LANGS}
    found = {f for f in ROOT.glob("*/*.md")}
    assert found <= allowed, sorted(map(str, found - allowed))


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("section", SECTIONS)
def test_section_exists_in_both_languages_with_sane_length(page, section):
    en, zh = read(page, section, "en"), read(page, section, "zh")
    n_en, n_zh = len(en.split()), zh_units(zh)
    assert EN_WORDS[0] <= n_en <= EN_WORDS[1], f"{page}/{section}.en: {n_en} words"
    assert ZH_UNITS[0] <= n_zh <= ZH_UNITS[1], f"{page}/{section}.zh: {n_zh} units"
    assert len(CJK.findall(zh)) > 2 * len(CJK.findall(en)), f"{page}/{section}.zh is not Chinese"
    assert not CJK.search(en), f"{page}/{section}.en contains CJK text"


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("section", SECTIONS)
@pytest.mark.parametrize("lang", LANGS)
def test_latex_is_balanced(page, section, lang):
    text = read(page, section, lang)
    assert text.count("$$") % 2 == 0, f"{page}/{section}.{lang}: odd number of $$"
    inline = text.replace("$$", "").replace(r"\$", "")
    assert inline.count("$") % 2 == 0, f"{page}/{section}.{lang}: unbalanced inline $"
    pairs = ((r"\{", r"\}"), (r"\\left(?![A-Za-z])", r"\\right(?![A-Za-z])"))
    for math in re.findall(r"\$\$(.+?)\$\$|\$(.+?)\$", text, flags=re.S):
        body = math[0] or math[1]
        for left, right in pairs:
            assert len(re.findall(left, body)) == len(re.findall(right, body)), (page, section, lang, body)


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("section", SECTIONS)
def test_languages_carry_same_numbers_and_equations(page, section):
    en, zh = read(page, section, "en"), read(page, section, "zh")
    nums_en, nums_zh = set(KEY_NUMBER.findall(en)), set(KEY_NUMBER.findall(zh))
    assert nums_en == nums_zh, (f"{page}/{section}: only en {sorted(nums_en - nums_zh)}, "
                                f"only zh {sorted(nums_zh - nums_en)}")
    assert en.count("$$") == zh.count("$$"), f"{page}/{section}: display equations differ"


@pytest.mark.parametrize("page", sorted(COVERAGE))
@pytest.mark.parametrize("lang", LANGS)
def test_page_keeps_its_key_facts(page, lang):
    text = page_text(page, lang)
    missing = [group for group in COVERAGE[page][lang] if not any(t.lower() in text.lower() for t in group)]
    assert not missing, f"{page}.{lang} lost: {missing}"


def test_coverage_table_names_only_indexed_pages():
    assert set(COVERAGE) == EXPECTED_PAGES
