"""The install stays sound as upstream moves: no import name of ours shadows a dependency, our model loads
never kernelize from the hub, and bitsandbytes' optional hub probe prints nothing scary at our boundary."""
from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Folders at the repo root that are not importable packages of ours (data, tooling, the venv).
NOT_PACKAGES = {".venv", ".git", ".ci", ".streamlit", "data", "artifacts", "bench", "content", "tests"}


def our_top_level_names(root: Path = ROOT) -> set[str]:
    """Every name `import X` would resolve to a file of this repo when its root is on sys.path."""
    names = set()
    for p in root.iterdir():
        if p.name.startswith(".") or p.name in NOT_PACKAGES:
            continue
        if p.is_dir() and any(p.glob("*.py")):      # a package, or a namespace package: both answer
            names.add(p.name)
        elif p.suffix == ".py":
            names.add(p.stem)
    return names


def clashes(root: Path = ROOT) -> dict[str, list[str]]:
    """{our top-level name: [installed distributions that also provide it]}."""
    installed = md.packages_distributions()          # import name -> [distribution, ...]
    return {name: installed[name] for name in our_top_level_names(root) if name in installed}


def test_the_walk_finds_our_packages():
    names = our_top_level_names()
    assert {"app", "labs", "peftlab_kernels", "streamlit_app"} <= names, names


def test_no_top_level_name_of_ours_is_a_dependency_import_name():
    assert "torch" in md.packages_distributions(), "the walk sees no distributions"
    found = clashes()
    assert not found, (f"these top-level names of the repo are also import names of installed distributions "
                       f"and would shadow them when the repo root is on sys.path: {found}; rename ours")


def test_the_collision_check_catches_a_shadowing_package(tmp_path):
    """The layout this repo had until transformers 5.25 pulled in the hub library `kernels`, rebuilt in a temp
    folder: the check must report it (a module file shadows as well as a package)."""
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "__init__.py").write_text("")
    (tmp_path / "torch.py").write_text("")
    (tmp_path / "content").mkdir()
    expected = {"torch"} | ({"kernels"} if "kernels" in md.packages_distributions() else set())
    assert set(clashes(tmp_path)) == expected


# No network in a child process: any connection attempt raises at once instead of timing out.
NO_NET = r"""
import socket
def _no_net(*a, **k):
    raise OSError("network disabled by the test")
socket.socket.connect = _no_net
socket.create_connection = _no_net
"""


def _run(argv: list[str], **env_set: str) -> subprocess.CompletedProcess:
    """Run from the repo root with no PYTHONPATH and none of the hub switches, unless `env_set` sets them."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_HUB_OFFLINE", "USE_HUB_KERNELS")}
    env.update(PEFTLAB_ROOT=str(ROOT), **env_set)
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


PROBE = NO_NET + r"""
import json, os, sys
sys.path.insert(0, os.environ["PEFTLAB_ROOT"])
import transformers
from transformers import AutoModelForCausalLM
from labs.base import load_base, model_dir
from labs.hf import is_kernelized
ours, _ = load_base()
out = {"transformers": transformers.__version__, "ours": is_kernelized(ours)}
try:
    out["control"] = is_kernelized(AutoModelForCausalLM.from_pretrained(model_dir(), local_files_only=True))
except Exception as err:
    out["control_error"] = f"{type(err).__name__}: {err}"
print(json.dumps(out))
"""


def test_load_base_never_kernelizes_even_with_the_hub_library_installed():
    if "kernels" not in md.packages_distributions():
        pytest.skip("the hub library `kernels` is not installed: nothing could kernelize")
    out = json.loads(_run([sys.executable, "-c", PROBE], HF_HUB_OFFLINE="1").stdout.strip().splitlines()[-1])
    assert out["ours"] is False, out
    # The control shows the check can fail: a plain from_pretrained on a transformers that defaults
    # use_kernels=True marks the model kernelized (older 5.x default to False: then both are False).
    from packaging.version import Version

    if Version(out["transformers"]) >= Version("5.25.0"):
        assert out.get("control") is True, out


def test_is_kernelized_sees_a_replaced_forward():
    from labs.base import tiny_llama
    from labs.hf import is_kernelized

    model = tiny_llama()
    assert not is_kernelized(model)
    norm = model.model.norm
    norm.forward = lambda x: x                      # what kernelize's _replace_forward leaves behind
    assert is_kernelized(model)


def test_bitsandbytes_hub_probe_warning_is_dropped_and_others_kept(caplog):
    import logging

    from labs.hf import BNB_HUB_PROBE, quiet_bitsandbytes_probe

    quiet_bitsandbytes_probe()
    quiet_bitsandbytes_probe()                       # idempotent
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    assert len(logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger="bitsandbytes.backends.cpu.ops"):
        logger.warning("%s: offline. Please make sure you already `pip install kernels`", BNB_HUB_PROBE)
        logger.warning("something else bitsandbytes wants you to see")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["something else bitsandbytes wants you to see"]


def test_bitsandbytes_import_offline_prints_no_hub_probe():
    """With HF_HUB_OFFLINE=1 the hub library adds its own warning for bitsandbytes' probe: both are hushed."""
    pytest.importorskip("bitsandbytes")
    code = ("import os, sys; sys.path.insert(0, os.environ['PEFTLAB_ROOT']);"
            "from labs.hf import import_bitsandbytes; import_bitsandbytes(); print('ok')")
    proc = _run([sys.executable, "-c", code], HF_HUB_OFFLINE="1")
    assert "Failed to load CPU gemm_4bit_forward" not in proc.stderr + proc.stdout
    assert "kernels-community" not in proc.stderr, proc.stderr


def _names(path: Path) -> dict[str, str]:
    """{canonical name: the rest of the line} of a requirements or lock file (no -r lines, no comments)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name = re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]
        out[name.lower().replace("_", "-").replace(".", "-")] = line[len(name):]
    return out


def test_the_lock_pins_every_requirement_and_satisfies_it():
    from packaging.specifiers import SpecifierSet

    locked = {**_names(ROOT / "requirements.lock"), **_names(ROOT / "requirements-cpu.lock")}
    assert all(v.startswith("==") for v in locked.values()), "lock lines are exact pins"
    for req in ("requirements.txt", "requirements-dev.txt"):
        for name, spec in _names(ROOT / req).items():
            assert name in locked, f"{req}: {name} is not in requirements.lock; run `make lock`"
            version = locked[name][2:]
            assert version in SpecifierSet(spec.strip()), f"{name}=={version} (lock) is outside {spec} ({req})"
    assert set(_names(ROOT / "requirements-cpu.lock")) == {"torch", "triton"}


def test_the_lock_is_what_is_installed_here():
    """The suite runs against the lock: every locked distribution installed here has the locked version
    (a GPU box keeps its own torch and triton, so those are only compared on the CPU)."""
    import importlib.metadata as md

    mismatched = []
    for name, pin in _names(ROOT / "requirements.lock").items():
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            continue                                  # e.g. a platform-only dependency
        if have.split("+")[0] != pin[2:]:
            mismatched.append(f"{name} {have} (lock {pin[2:]})")
    assert not mismatched, "installed versions differ from requirements.lock: " + ", ".join(mismatched)


def test_ci_runs_make_test_then_the_canary():
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("make test") < ci.index("canary.sh")
    canary = (ROOT / ".ci" / "canary.sh").read_text()
    assert "--upgrade-strategy eager -r requirements-dev.txt" in canary and "requirements.lock" not in \
        canary.split("--upgrade-strategy")[1].split("\n")[0]
    for smoke in ("labs run lora --quick --json", "test_install.py", "test_nf4.py", "test_lora.py",
                  "test_main_router_runs"):
        assert smoke in canary, smoke


NO_NET_WRAPPER = NO_NET + r"""
import runpy, sys
sys.argv = ["labs"] + sys.argv[1:]
runpy.run_module("labs", run_name="__main__", alter_sys=True)
"""


def _no_network_prefix() -> list[str]:
    """A private network namespace when the kernel allows it (root here and in CI), else an in-process guard."""
    import shutil

    if shutil.which("unshare") and subprocess.run(["unshare", "--user", "--map-root-user", "-n", "true"],
                                                  capture_output=True).returncode == 0:
        return ["unshare", "--user", "--map-root-user", "-n", sys.executable, "-m", "labs"]
    return [sys.executable, "-c", NO_NET_WRAPPER]


def test_a_lab_finishes_with_no_network_and_no_scary_message():
    """The NF4 lab loads the base model and imports bitsandbytes (its hub probe): with no network at all and
    no HF_HUB_OFFLINE, it must finish, print its JSON and show nothing about hub kernels."""
    args = ["run", "nf4", "--layers", "attention", "--eval-windows", "4", "--task", "none", "--json"]
    proc = _run(_no_network_prefix() + args)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["bnb"]["available"] and result["bnb"]["all_equal"], result.get("bnb")
    assert "kernels-community" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
