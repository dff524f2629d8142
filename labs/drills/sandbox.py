"""Run a learner's file in a sandbox: bubblewrap namespaces, rlimits, a wall clock, capped output.

    what                  how
    no network            bwrap --unshare-net: a fresh network namespace with only a downed loopback
    no project, no data   a new mount namespace that contains only the interpreter, its packages and
                          /sandbox/child.py, read-only; the project tree, content/drills, the learner
                          database, peft and bitsandbytes are not in it (tmpfs over them where needed)
    private /tmp          a 64 MiB tmpfs, the only writable place; cwd /tmp/work
    process count         RLIMIT_NPROC in the child. It does not bind uid 0, so as root the child drops
                          to a fresh uid (200000 + n) before the learner's code runs; as a normal user
                          bwrap adds a user namespace and the limit counts per namespace (Linux >= 5.14)
    CPU, memory, files    RLIMIT_CPU, RLIMIT_AS (above what torch needs), RLIMIT_FSIZE, RLIMIT_NOFILE
    wall clock            the parent kills the sandbox when the job exceeds `wall_s`
    everything it started bwrap --unshare-pid --die-with-parent: killing bwrap kills the PID namespace
    output                stderr read by the parent, 64 KiB kept, killed past 1 MiB
    environment           PATH, HOME, LANG and OMP_NUM_THREADS only

Without bwrap, or when the kernel refuses a network namespace, `probe()` says why and nothing runs.
A `Sandbox` is started before the job exists, so the child's `import torch` overlaps the parent's work;
one sandbox runs one job and is then gone (learner code never shares a process with another attempt).
"""
from __future__ import annotations

import importlib.util
import itertools
import os
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from labs.drills.child import WireError, decode, encode, split_frames

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("child.py")
HIDDEN_PACKAGES = ("peft", "bitsandbytes")         # libraries whose functions would answer the drills
_uids = itertools.count((os.getpid() * 97) % 400000)


@dataclass
class Limits:
    wall_s: float = 20.0          # from the moment the job is sent
    cpu_s: int = 15
    memory: int = 1 << 30         # address space on top of what the interpreter + torch already map
    nproc: int = 32               # processes + threads of the sandbox uid
    fsize: int = 16 << 20         # largest file it may write
    tmp_bytes: int = 64 << 20     # its whole /tmp
    output: int = 1 << 20         # stderr bytes before it is killed
    keep_output: int = 64 << 10   # stderr bytes shown to the learner
    result_bytes: int = 64 << 20  # largest results frame


@dataclass
class Outcome:
    status: str                   # ok | import_error | timeout | cpu | memory | output | crashed | protocol | refused
    message: str = ""
    results: list = field(default_factory=list)
    output: str = ""
    seconds: float = 0.0          # wall time from sending the job to the verdict
    cpu_s: float | None = None    # CPU time of the sandboxed process (torch import included)


class SandboxUnavailable(RuntimeError):
    pass


def _bwrap() -> str | None:
    return shutil.which("bwrap")


def _under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _data_dir() -> Path:
    return Path(os.environ.get("PEFTLAB_DATA_DIR", "data")).resolve()


def _mounts() -> list[str]:
    """bwrap arguments: read-only binds of the interpreter and its packages, tmpfs over what must stay hidden."""
    roots = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    roots.add(Path(os.path.realpath(sys.executable)).parent.parent)
    spec = importlib.util.find_spec("torch")
    if spec and spec.origin:
        roots.add(Path(spec.origin).resolve().parent.parent)
    for system in ("/usr", "/lib", "/lib64", "/bin", "/sbin"):
        if os.path.isdir(system) and not os.path.islink(system):
            roots.add(Path(system))
    roots = {r for r in roots if not any(r != o and _under(r, o) for o in roots)}    # outermost only
    hidden = [ROOT, _data_dir(), ROOT / "content" / "drills"]
    for name in HIDDEN_PACKAGES:
        s = importlib.util.find_spec(name)
        if s and s.submodule_search_locations:
            hidden += [Path(p).resolve() for p in s.submodule_search_locations]
    args: list[str] = []
    outer = sorted(r for r in roots if not _under(r, ROOT))
    inner = sorted(r for r in roots if _under(r, ROOT))           # e.g. the project's own .venv
    parents = {a for r in roots for a in r.parents if a != Path("/") and not any(_under(a, o) for o in outer)}
    for d in sorted(parents, key=lambda p: len(p.parts)):        # bwrap would make them 0700: unreadable
        args += ["--perms", "0755", "--dir", str(d)]             # once the child is not root any more
    for r in outer:
        args += ["--ro-bind", str(r), str(r)]
    for h in hidden:                                               # hide what an outer bind exposed
        if any(_under(h, r) for r in outer) and h.exists():
            args += ["--tmpfs", str(h)]
    for r in inner:
        args += ["--ro-bind", str(r), str(r)]
    for h in hidden:                                               # ... and what the inner binds exposed
        if any(_under(h, r) for r in inner) and h.exists():
            args += ["--tmpfs", str(h)]
    for link, target in (("/lib", "usr/lib"), ("/lib64", "usr/lib64"), ("/bin", "usr/bin")):
        if os.path.islink(link):
            args += ["--symlink", target, link]
    for f in ("/etc/ld.so.cache", "/etc/localtime"):
        if os.path.exists(f):
            args += ["--ro-bind", f, f]
    return args


def command(uid: int, limits: Limits, warm: bool = True) -> list[str]:
    bw = _bwrap()
    if bw is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed; install it (Debian: apt-get install "
                                 "bubblewrap) to run learner code")
    ns = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if os.getuid() != 0:
        ns.append("--unshare-user")
    # The private /tmp first: binds that follow may lie under /tmp (a checkout in /tmp/x with its .venv)
    # and must land on top of it, not be hidden by it.
    return [bw, *ns, "--die-with-parent", "--new-session", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
            *_mounts(), "--proc", "/proc", "--dev", "/dev",
            "--ro-bind", str(CHILD), "/sandbox/child.py", "--chdir", "/tmp", "--hostname", "sandbox",
            sys.executable,
            "-I", "-B", "/sandbox/child.py", str(uid), "warm" if warm else "cold"]


ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp/work", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}

_probe: tuple[bool, str] | None = None


def probe() -> tuple[bool, str]:
    """(True, "") when bwrap can create the namespaces (network included) here; else (False, why). Cached."""
    global _probe
    if _probe is None:
        bw = _bwrap()
        if bw is None:
            _probe = (False, "bubblewrap (bwrap) is not installed, so learner code cannot be isolated; "
                             "install it (Debian: apt-get install bubblewrap)")
        else:
            ns = ["--unshare-net", "--unshare-pid"] + ([] if os.getuid() == 0 else ["--unshare-user"])
            r = subprocess.run([bw, *ns, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"],
                               capture_output=True, text=True, timeout=20, env=ENV)
            _probe = (True, "") if r.returncode == 0 else (
                False, "the kernel refused a private network/PID namespace, so learner code cannot run without "
                       f"network access; refusing to run it (bwrap: {r.stderr.strip()[:200]})")
    return _probe


class Sandbox:
    """One sandboxed child, started now (it imports torch while the caller prepares the job), used once."""

    def __init__(self, limits: Limits | None = None, warm: bool = True):
        """`warm`: the child imports torch before the job arrives (every drill needs it; tests of the sandbox
        itself pass False and start in milliseconds)."""
        ok, why = probe()
        if not ok:
            raise SandboxUnavailable(why)
        self.limits = limits or Limits()
        self.uid = 200000 + next(_uids) % 400000
        self.proc = subprocess.Popen(command(self.uid, self.limits, warm), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=ENV, close_fds=True)
        self.started = time.perf_counter()
        self.used = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, grace: float = 0.0) -> None:
        """SIGKILL bwrap (after `grace` seconds to exit by itself, so its CPU time is accounted to us);
        --die-with-parent and the PID namespace take every process of the sandbox with it."""
        if grace and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass

    def run(self, code: str, cases: list[dict]) -> Outcome:
        if self.used:
            raise RuntimeError("a Sandbox runs one job; start a new one")
        self.used = True
        lim = self.limits
        job = encode({"code": code, "cases": cases, "limits": {"cpu_s": lim.cpu_s, "memory": lim.memory,
                                                               "nproc": lim.nproc, "fsize": lim.fsize}})
        writer = threading.Thread(target=self._send, args=(job,), daemon=True)
        writer.start()
        try:
            return self._collect()
        finally:
            self.kill()

    def _send(self, job: bytes) -> None:
        try:
            self.proc.stdin.write(job)
            self.proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def _collect(self) -> Outcome:
        lim = self.limits
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ, "frames")
        sel.register(self.proc.stderr, selectors.EVENT_READ, "err")
        t0 = time.perf_counter()
        deadline: float | None = None
        buf, err, err_total, frames, open_ = b"", bytearray(), 0, [], 2
        verdict = None
        while open_ and verdict is None:
            if deadline is None and frames:                        # the wall clock starts once torch is ready
                deadline = time.perf_counter() + lim.wall_s
            now = time.perf_counter()
            wait = (deadline - now) if deadline else (lim.wall_s + 60 - (now - t0))
            if wait <= 0:
                verdict = Outcome("timeout", f"time limit: still running after {lim.wall_s:g} s (an endless loop?)")
                break
            for key, _ in sel.select(timeout=min(wait, 0.5)):
                chunk = os.read(key.fileobj.fileno(), 1 << 16)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_ -= 1
                elif key.data == "err":
                    err_total += len(chunk)
                    if len(err) < lim.keep_output:
                        err += chunk[:lim.keep_output - len(err)]
                    if err_total > lim.output:
                        verdict = Outcome("output", f"output limit: printed more than {lim.output >> 10} KiB")
                else:
                    buf += chunk
                    if len(buf) > lim.result_bytes:
                        verdict = Outcome("protocol", "the results were larger than "
                                                      f"{lim.result_bytes >> 20} MiB")
                    try:
                        new, buf = split_frames(buf)
                    except (WireError, ValueError, KeyError, TypeError, RecursionError) as e:
                        verdict = Outcome("protocol", f"the sandbox wrote something that is not a result ({e})")
                        new = []
                    frames += new
        seconds = time.perf_counter() - (deadline - lim.wall_s if deadline else t0)
        self.kill(grace=0.5 if verdict is None else 0.0)           # finished: let it exit; a verdict: kill now
        out = err.decode("utf-8", "replace")
        if verdict is None:
            verdict = self._verdict(frames)
        verdict.output, verdict.seconds = out, seconds
        return verdict

    def _verdict(self, frames: list[bytes]) -> Outcome:
        rc = self.proc.returncode
        bodies = []
        for f in frames:
            try:
                bodies.append(decode(f))
            except (WireError, ValueError, KeyError, TypeError, RecursionError) as e:
                return Outcome("protocol", f"the sandbox wrote something that is not a result ({e})")
        final = bodies[-1] if bodies else {}
        if isinstance(final, dict) and "results" in final and isinstance(final["results"], list):
            cpu = final.get("cpu_s")
            return Outcome("ok", results=final["results"], cpu_s=float(cpu) if isinstance(cpu, (int, float)) else None)
        if isinstance(final, dict) and "import_error" in final:
            return Outcome("import_error", str(final["import_error"]))
        if not bodies:
            return Outcome("crashed", f"the sandbox could not start (exit code {rc})")
        sig = -rc if rc is not None and rc < 0 else (rc - 128 if rc is not None and rc > 128 else 0)   # bwrap: 128+n
        if sig == signal.SIGXCPU:
            return Outcome("cpu", f"CPU time limit: more than {self.limits.cpu_s} s of CPU")
        if sig == signal.SIGKILL:
            return Outcome("crashed", "the process was killed before it returned a result (SIGKILL; the memory "
                                      "or CPU limit, or the code killed itself)")
        return Outcome("crashed", f"the process ended without a result (exit code {rc})")


ALLOW_ENV = "PEFTLAB_ALLOW_CODE"
LOOPBACK = ("localhost", "127.0.0.1", "::1")


def code_allowed(bind_address: str | None, env=None) -> tuple[bool, str]:
    """May the app run learner code? On by default when the server listens on loopback only; off on any other
    address (other people could reach it) unless PEFTLAB_ALLOW_CODE=1. PEFTLAB_ALLOW_CODE=0 turns it off."""
    env = os.environ if env is None else env
    flag = env.get(ALLOW_ENV, "")
    if flag == "1":
        return True, f"{ALLOW_ENV}=1"
    if flag == "0":
        return False, f"{ALLOW_ENV}=0"
    addr = (bind_address or "").strip()
    if addr in LOOPBACK or addr.startswith("127."):
        return True, f"loopback ({addr})"
    return False, f"the server listens on {addr or 'every interface (no server.address)'}"
