"""The sandbox against hostile submissions: each gets its verdict within the limits, nothing is left running,
nothing is written outside, no connection is made, and the grader process survives.

Most cases run a "cold" sandbox (no torch import: they need none), so each costs tens of milliseconds plus
whatever limit it is meant to hit; one warm sandbox checks the torch allocation and the real grading path.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from labs.drills.sandbox import ROOT, Limits, Sandbox, probe

FAST = Limits(wall_s=2.5, cpu_s=2, output=256 << 10)


def _uid_processes(uid: int) -> list[int]:
    """PIDs (host view) whose real uid is `uid`: what a sandbox left behind."""
    left = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                for line in (d / "status").read_text().splitlines():
                    if line.startswith("Uid:") and int(line.split()[1]) == uid:
                        left.append(int(d.name))
            except (OSError, ValueError):
                pass
    return left


def _run(code: str, limits: Limits = FAST, cases=None, warm: bool = False):
    if not probe()[0]:          # only the tests that start a sandbox skip; the refusal/config tests always run
        pytest.skip(f"no sandbox here: {probe()[1]}")
    sb = Sandbox(limits, warm=warm)
    t0 = time.perf_counter()
    out = sb.run(code, cases if cases is not None else [{"fn": "f", "args": [], "kwargs": {}}])
    elapsed = time.perf_counter() - t0
    time.sleep(0.05)
    assert _uid_processes(sb.uid) == [] or os.getuid() != 0, "processes of the sandbox uid survived"
    assert sb.proc.poll() is not None
    return out, elapsed


def test_infinite_loop_hits_the_cpu_limit():
    out, elapsed = _run("def f():\n    while True:\n        pass\n", Limits(wall_s=8, cpu_s=1))
    assert out.status == "cpu" and "CPU time limit" in out.message, out    # ~2 s of CPU (rlimit granularity)
    assert elapsed < 8 + 3


def test_sleeping_forever_hits_the_wall_clock():
    out, elapsed = _run("import time\ndef f():\n    time.sleep(3600)\n", Limits(wall_s=1.5))
    assert out.status == "timeout" and "time limit" in out.message, out
    assert elapsed < 1.5 + 3

def test_fork_bomb_is_contained_and_fully_killed():
    code = ("import os, time\n"
            "def f():\n"
            "    n = 0\n"
            "    for _ in range(100000):\n"
            "        try:\n"
            "            if os.fork() == 0:\n"
            "                while True: time.sleep(1)\n"
            "            n += 1\n"
            "        except OSError:\n"
            "            return n\n")
    out, elapsed = _run(code)
    assert out.status == "ok", out                      # fork() failed: the process limit held, for root too
    assert out.results[0]["out"] < FAST.nproc, out.results
    assert elapsed < FAST.wall_s + 5


def test_plain_fork_bomb_gets_a_verdict():
    out, elapsed = _run("import os\ndef f():\n    while True:\n        os.fork()\n")
    assert out.status == "ok" and "Resource temporarily unavailable" in out.results[0]["error"], out
    assert elapsed < FAST.wall_s + 5


def test_fifty_gigabytes_is_refused_by_the_memory_limit():
    out, _ = _run("def f():\n    return len(bytearray(50 * 10**9))\n")
    assert out.status == "ok" and "MemoryError" in out.results[0]["error"], out


def test_socket_to_the_host_connects_nowhere():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.3)
    port = srv.getsockname()[1]
    code = ("import socket\n"
            f"def f():\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n    return 'connected'\n")
    out, _ = _run(code)
    with pytest.raises(socket.timeout):
        srv.accept()                                    # nothing ever arrived
    srv.close()
    assert "error" in out.results[0] and "connected" not in str(out.results[0].get("out")), out


def test_killing_the_parent_leaves_the_grader_alive():
    code = ("import os, signal\n"
            "def f():\n"
            "    for pid in (os.getppid(), 1, -1):\n"
            "        try:\n"
            "            os.kill(pid, signal.SIGKILL)\n"
            "        except OSError:\n"
            "            pass\n"
            "    return 'still here'\n")
    out, _ = _run(code)
    assert out.status in ("ok", "crashed"), out          # the grader is still running and got a verdict


def test_writes_outside_the_private_tmp_fail(tmp_path):
    target = tmp_path / "escaped.txt"
    code = ("import os\n"
            "def f():\n"
            "    done = []\n"
            f"    for p in ({str(target)!r}, {str(ROOT / 'escaped.txt')!r}, '/usr/escaped.txt', 'inside.txt'):\n"
            "        try:\n"
            "            open(p, 'w').write('x')\n"
            "            done.append(p)\n"
            "        except OSError:\n"
            "            pass\n"
            "    return done\n")
    out, _ = _run(code)
    assert out.results[0]["out"] == ["inside.txt"], out   # only its own temp dir
    assert not target.exists() and not (ROOT / "escaped.txt").exists()


def test_printing_200_megabytes_hits_the_output_cap():
    out, elapsed = _run("import sys\ndef f():\n    sys.stdout.write('y' * 200_000_000)\n")
    assert out.status == "output", out
    assert len(out.output) <= FAST.keep_output
    assert elapsed < FAST.wall_s + 5


def test_project_references_and_data_are_unreachable():
    data = os.environ["PEFTLAB_DATA_DIR"]
    code = ("import os, sys\n"
            "def f():\n"
            "    seen = {}\n"
            f"    for p in ({str(ROOT / 'content/drills/lora-forward/solution.py')!r}, {str(ROOT / 'labs/methods/lora.py')!r},\n"
            f"              {str(Path(data) / 'study.sqlite3')!r}, {data!r}):\n"
            "        seen[p] = os.path.exists(p)\n"
            "    for mod in ('labs', 'peftlab_kernels', 'app', 'peft', 'bitsandbytes'):\n"
            "        try:\n"
            "            seen[mod] = getattr(__import__(mod), '__file__', None) is not None  # an empty dir: no code\n"
            "        except ImportError:\n"
            "            seen[mod] = False\n"
            "    seen['env'] = sorted(os.environ)\n"
            "    return seen\n")
    out, _ = _run(code)
    seen = out.results[0]["out"]
    assert not any(v for k, v in seen.items() if k != "env"), seen
    assert set(seen["env"]) <= {"PATH", "HOME", "LANG", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONIOENCODING", "PWD",
                                "LC_CTYPE"}, seen["env"]


def test_import_labs_at_module_level_is_an_import_error():
    out, _ = _run("import labs.methods.lora\ndef f():\n    return 1\n")
    assert out.status == "import_error" and "No module named 'labs'" in out.message, out


def test_warm_sandbox_grades_and_torch_50gb_is_refused():
    import torch

    code = ("import torch\n"
            "def f(x):\n"
            "    if x.numel() == 1:\n"
            "        return torch.ones(50 * 10**9 // 4)\n"
            "    return x * 2\n")
    x = torch.arange(6.0).reshape(2, 3)
    out, _ = _run(code, Limits(wall_s=10), [{"fn": "f", "args": [x]}, {"fn": "f", "args": [torch.ones(1)]}], warm=True)
    assert out.status == "ok", out
    assert torch.equal(out.results[0]["out"], x * 2)
    assert "allocate" in out.results[1]["error"], out.results[1]


def test_no_bwrap_means_no_code_runs_and_says_why(monkeypatch):
    from labs.drills import runner, sandbox

    monkeypatch.setattr(sandbox, "_bwrap", lambda: None)
    monkeypatch.setattr(sandbox, "_probe", None)
    report = runner.check("kv-cache-gqa", "def kv_cache_bytes(*a):\n    return 0\n")
    assert report.status == "refused" and not report.passed and "bubblewrap" in report.message


def test_code_is_allowed_on_loopback_only_unless_the_operator_says_so():
    from labs.drills.sandbox import code_allowed

    assert code_allowed("localhost", {})[0] and code_allowed("127.0.0.1", {})[0] and code_allowed("::1", {})[0]
    assert not code_allowed("0.0.0.0", {})[0] and not code_allowed(None, {})[0]
    assert code_allowed("0.0.0.0", {"PEFTLAB_ALLOW_CODE": "1"})[0]
    assert not code_allowed("localhost", {"PEFTLAB_ALLOW_CODE": "0"})[0]


def test_a_forged_result_stream_is_a_verdict_not_a_crash():
    code = ("import os\n"
            "def f():\n"
            "    for fd in range(3, 12):\n"
            "        try:\n"
            "            os.write(fd, b'PLDR\\x00\\x00\\x00\\x02{}garbage')\n"
            "        except OSError:\n"
            "            pass\n"
            "    return 1\n")
    out, _ = _run(code)
    assert out.status == "protocol", out
    from labs.drills.child import WireError, decode, encode

    huge = encode({"out": 0}).replace(b'{"body": {"__dict__": [["out", 0]]}, "sizes": []}',
                                      b'{"body": {"__t__": 0, "dtype": "float32", "shape": [1000000000]}, "sizes": [4]}')
    with pytest.raises(WireError):                       # claims 4 GB, holds 4 bytes: refused, nothing allocated
        decode(huge[:4] + len(huge[8:]).to_bytes(4, "big") + huge[8:] + b"\0" * 4)


def test_no_network_namespace_means_no_code_runs_and_says_why(monkeypatch):
    from labs.drills import runner, sandbox

    monkeypatch.setattr(sandbox, "_bwrap", lambda: "/bin/false")     # bwrap present, namespaces refused
    monkeypatch.setattr(sandbox, "_probe", None)
    report = runner.check("kv-cache-gqa", "def kv_cache_bytes(*a):\n    return 0\n")
    assert report.status == "refused" and "network" in report.message and not report.tests


def test_the_private_tmp_is_mounted_before_the_binds(monkeypatch):
    """A checkout under /tmp (CI clones anywhere) binds its .venv under /tmp: the sandbox's own /tmp tmpfs must
    come first, or it hides the interpreter and the sandbox cannot start (found on a clone in /tmp/fresh)."""
    from labs.drills import sandbox

    monkeypatch.setattr(sandbox, "_bwrap", lambda: "/usr/bin/bwrap")
    cmd = sandbox.command(200001, Limits())
    tmp = cmd.index("/tmp", cmd.index("--tmpfs"))
    binds = [i for i, a in enumerate(cmd) if a in ("--ro-bind", "--bind")]
    assert cmd[tmp - 1] == "--tmpfs" and binds and tmp < min(binds), cmd[:12]
