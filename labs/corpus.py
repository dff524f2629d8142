"""The pretraining corpus: English prose that ships with every CPython, so it is offline and license-clean.

Source: the Python documentation's reference topics (``pydoc_data.topics``, the text behind
``help('if')`` etc.) and the docstrings of a fixed list of pure-Python standard-library modules.
Both are © Python Software Foundation, distributed under the PSF License Agreement with CPython.

Because those texts differ between Python releases, ``build`` is run once and its output is
committed as ``labs/data/corpus.txt.gz`` (with the Python version it came from in ``corpus.json``);
pretraining always reads the committed snapshot, so the bundled model is reproducible anywhere.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib
import inspect
import json
import re
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
CORPUS = DATA / "corpus.txt.gz"
META = DATA / "corpus.json"

# Every importable standard-library module (and its submodules), minus ones with import side effects.
SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtledemo", "turtle", "lib2to3", "ensurepip", "venv",
        "test", "pydoc_data", "__future__", "__hello__", "__phello__", "_pydecimal", "_pyio"}
MODULES = tuple(sorted(m for m in sys.stdlib_module_names if not m.startswith("_") and m not in SKIP))


def _clean(text: str) -> list[str]:
    """Keep prose paragraphs; drop interactive examples, code blocks and reST directives."""
    paras, out = re.split(r"\n\s*\n", text), []
    for p in paras:
        lines = [ln for ln in p.splitlines() if not ln.lstrip().startswith((">>>", "...", ".. ", "::"))]
        if not lines or sum(ln.startswith("    ") for ln in lines) > len(lines) / 2:
            continue  # mostly indented: a code block
        s = re.sub(r"\s+", " ", " ".join(lines)).strip()
        s = re.sub(r"[`*]+", "", s)
        if len(s) >= 80 and sum(c.isalpha() for c in s) / len(s) > 0.7:
            paras and out.append(s)
    return out


def _docstrings(mod) -> list[str]:
    seen, docs = set(), []
    for obj in [mod, *[v for _, v in sorted(vars(mod).items())]]:
        doc = inspect.getdoc(obj) if (obj is mod or getattr(obj, "__module__", None) == mod.__name__) else None
        if doc and doc not in seen:
            seen.add(doc)
            docs.extend(_clean(doc))
            if inspect.isclass(obj):
                for _, meth in sorted(vars(obj).items()):
                    d = inspect.getdoc(meth) if callable(meth) else None
                    if d and d not in seen:
                        seen.add(d)
                        docs.extend(_clean(d))
    return docs


def _walk(names) -> list[str]:
    """Top-level modules and, for packages, their submodules (sorted, so the order is fixed)."""
    import pkgutil

    out = []
    for name in names:
        out.append(name)
        try:
            mod = importlib.import_module(name)
        except BaseException:
            continue
        if hasattr(mod, "__path__"):
            subs = [m.name for m in pkgutil.walk_packages(mod.__path__, name + ".")
                    if ".test" not in m.name and "idle" not in m.name]
            out.extend(sorted(subs))
    return out


def build() -> dict:
    """Collect the corpus from this Python installation and write the committed snapshot."""
    import pydoc_data.topics as topics

    paras: list[str] = []
    for key in sorted(topics.topics):
        paras.extend(_clean(topics.topics[key]))
    for name in _walk(MODULES):
        try:
            paras.extend(_docstrings(importlib.import_module(name)))
        except BaseException:  # missing from this build of Python, or refuses to import here: skip it
            continue
    seen, uniq = set(), []
    for p in paras:
        if p not in seen:
            seen.add(p)
            uniq.append(p)
    text = "\n".join(uniq) + "\n"
    DATA.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(CORPUS, "wb", mtime=0) as f:
        f.write(text.encode("utf-8"))
    meta = {"source": "CPython pydoc_data.topics + stdlib docstrings (PSF License)",
            "python": sys.version.split()[0], "paragraphs": len(uniq), "chars": len(text),
            "sha256": hashlib.sha256(text.encode()).hexdigest(), "modules": MODULES}
    META.write_text(json.dumps(meta, indent=1))
    return meta


def load() -> str:
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        return f.read()


if __name__ == "__main__":
    print(json.dumps({k: v for k, v in build().items() if k != "modules"}, indent=1))
