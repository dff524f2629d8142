"""Native CPU kernels: C sources in `peftlab_kernels/csrc/`, built once per machine, loaded with ctypes.

Why: some CPU ops are memory-bound loops that PyTorch can only express as several passes (gather,
scale, cast: each reads and writes the whole tensor). One fused C loop reads the input once and
writes the output once. The numbers are the same as the PyTorch path bit for bit (tests).

How: on first use the source is compiled with the system C compiler (`$CC`, else `cc`/`gcc`) into
a cache directory (`$PEFTLAB_NATIVE_DIR`, else `~/.cache/peftlab/native`, else a private directory
under the system temp dir when that is not writable), named by a hash of the
source, the compiler and the platform, so an edited source or another machine builds afresh. The
build writes a temporary file and renames it into place, so concurrent workers never load a
half-written library. No compiler, a failed build, or `PEFTLAB_NO_NATIVE=1`: `library()` returns
None and callers use the PyTorch path; `status()` says why.

No Python headers and no torch C++ API are needed: the C functions take raw pointers, and ctypes
releases the GIL while they run.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

OFF_ENV = "PEFTLAB_NO_NATIVE"
DIR_ENV = "PEFTLAB_NATIVE_DIR"
CSRC = Path(__file__).resolve().parent / "csrc"
FLAGS = ["-O3", "-shared", "-fPIC", "-std=gnu11", "-ffp-contract=off"]   # no FMA contraction: bit-exact
OPTIONAL_FLAGS = ["-fopenmp"]   # threads on torch's own OpenMP pool; dropped if the compiler lacks it

_why: dict[str, str] = {}
_typed: dict[tuple, object] = {}


def _compiler() -> str | None:
    for cand in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def _cache_dir() -> Path:
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "peftlab" / "native"


def _build(name: str, cc: str) -> Path:
    src = CSRC / f"{name}.c"
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"{cc} --version failed: {e}") from e
    key = hashlib.sha256(src.read_bytes() + version.encode() + " ".join(FLAGS + OPTIONAL_FLAGS).encode()
                         + platform.machine().encode() + platform.system().encode()).hexdigest()[:16]
    out_dir = _cache_dir()
    target = out_dir / f"{name}-{key}.so"
    if target.exists():
        return target
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".so", dir=out_dir)
    except OSError:                       # read-only home (some CI and containers): a private temp dir
        out_dir = Path(tempfile.gettempdir()) / f"peftlab-native-{os.getuid()}"
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = out_dir / f"{name}-{key}.so"
        if target.exists():
            return target
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".so", dir=out_dir)
    os.close(fd)
    try:
        r = subprocess.run([cc, *FLAGS, *OPTIONAL_FLAGS, "-o", tmp, str(src)], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            r = subprocess.run([cc, *FLAGS, "-o", tmp, str(src)], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{Path(cc).name} exited {r.returncode}: {(r.stderr or r.stdout).strip()[-400:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


@functools.lru_cache(maxsize=None)
def library(name: str) -> ctypes.CDLL | None:
    """The loaded library `peftlab_kernels/csrc/<name>.c`, or None (then `status()[name]` says why)."""
    if os.environ.get(OFF_ENV, "") == "1":
        _why[name] = f"off ({OFF_ENV}=1)"
        return None
    cc = _compiler()
    if cc is None:
        _why[name] = "no C compiler found (set CC, or install gcc)"
        return None
    try:
        lib = ctypes.CDLL(str(_build(name, cc)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as e:
        _why[name] = f"build failed: {e}"
        return None
    _why[name] = "loaded"
    return lib


def function(name: str, symbol: str, argtypes: list) -> "ctypes._CFuncPtr | None":
    """`symbol` from library `name`, typed (int result), or None when the library is not available.
    Every C source also exports `<symbol>_simd()`: 1 when its SIMD loop runs on this CPU."""
    lib = library(name)
    if lib is None:
        return None
    key = (name, symbol, id(lib))
    if key not in _typed:
        f = getattr(lib, symbol)
        f.restype, f.argtypes = ctypes.c_int, argtypes
        _typed[key] = f
    return _typed[key]


def simd(name: str, symbol: str) -> bool:
    lib = library(name)
    return lib is not None and bool(getattr(lib, f"{symbol}_simd")())


def status() -> dict[str, str]:
    """{source name: 'loaded' or the reason it is not} for every C source, building if needed."""
    for src in sorted(CSRC.glob("*.c")):
        library(src.stem)
    return dict(_why)
