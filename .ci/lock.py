"""Write the lock files from a venv that just installed the requirements (run by `make lock`).

    python .ci/lock.py VENV_PYTHON            # rewrites requirements.lock and requirements-cpu.lock
    python .ci/lock.py VENV_PYTHON --diff     # prints the packages whose installed version differs from the lock

requirements.lock      every distribution of the resolved tree, `name==version`, used as pip constraints by
                       `make run`, `make test`, `.ci/run` and the Dockerfile; without torch's family.
requirements-cpu.lock  torch and triton: installed only where there is no NVIDIA GPU. A GPU box keeps the CUDA
                       build of torch (and the triton that build needs) that it already has.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
CPU_LOCK = ROOT / "requirements-cpu.lock"
TORCH_FAMILY = ("torch", "triton", "pytorch-triton")
TORCH_FAMILY_PREFIXES = ("nvidia-", "cuda-")
# Tooling that every venv has and no requirement asks for.
SKIP = {"pip", "setuptools", "wheel"}

INSTALLED = r"""
import importlib.metadata as md, json
print(json.dumps({d.metadata["Name"]: d.version for d in md.distributions()}))
"""


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def installed(python: str) -> dict[str, str]:
    out = subprocess.run([python, "-c", INSTALLED], capture_output=True, text=True, check=True).stdout
    return {canonical(k): v for k, v in json.loads(out).items() if canonical(k) not in SKIP}


def is_torch_family(name: str) -> bool:
    return name in TORCH_FAMILY or name.startswith(TORCH_FAMILY_PREFIXES)


def read_lock(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonical(name)] = version.strip()
    return pins


def write(python: str) -> None:
    pins = installed(python)
    torch_version = pins.get("torch", "?")
    header = (f"# Versions resolved together on {date.today().isoformat()} (Python {platform.python_version()}, "
              f"torch {torch_version}),\n# committed only after `make test` passed on exactly these. Regenerate "
              f"with `make lock`, then run\n# `make test` and commit the lock files together. Used as pip "
              f"constraints (-c).\n")
    body = "".join(f"{n}=={v}\n" for n, v in sorted(pins.items()) if not is_torch_family(n))
    LOCK.write_text(header + "# torch and triton are in requirements-cpu.lock (CPU boxes only).\n" + body)
    cpu = "".join(f"{n}=={v.split('+')[0]}\n" for n, v in sorted(pins.items()) if n in TORCH_FAMILY)
    CPU_LOCK.write_text(header + "# Installed only where there is no NVIDIA GPU: a GPU box keeps its own CUDA torch.\n"
                        + cpu)
    print(f"wrote {LOCK.name} ({body.count(chr(10))} pins) and {CPU_LOCK.name} ({cpu.strip()})")


def diff(python: str) -> list[str]:
    """'name installed (lock X)' for every distribution whose version is not the locked one."""
    locked = {**read_lock(LOCK), **read_lock(CPU_LOCK)}
    lines = []
    for name, version in sorted(installed(python).items()):
        want = locked.get(name)
        if want is None:
            lines.append(f"{name} {version} (not in the lock)")
        elif version.split("+")[0] != want:
            lines.append(f"{name} {version} (lock {want})")
    return lines


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if "--diff" in sys.argv[2:]:
        print("\n".join(diff(sys.argv[1])) or "every installed version is the locked one")
    else:
        write(sys.argv[1])
