"""Run a function on N ranks of a ``torch.distributed`` process group, and count what they communicate.

    launch("labs.sharded:train_rank", spec, world_size=2, on_event=emit, should_stop=stop) -> [result per rank]

    lab worker ──TCPStore (held here, so a dying rank cannot take it down)──┐
        │ start N fresh processes, one pipe each                           │
        ├─► rank 0 ─┐ init_process_group(gloo on CPU | nccl on GPUs, timeout) │
        └─► rank 1 ─┴─ fn(rank, world_size, spec, emit) ── events / result / error ──► pipes

The launcher owns its ranks: a rank that raises, exits or is killed (its pipe closes) makes ``launch`` stop
the other ranks (terminate, then kill), reap every one of them, and raise ``RankFailed`` with the first
rank's own message; a cancel stops them the same way. Each rank also dies with its parent (Linux
``PR_SET_PDEATHSIG``), so a worker killed by the supervisor leaves nothing behind, and the process group has
a timeout so a rank stuck in a collective errors out instead of hanging.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
PG_TIMEOUT_S = 30      # a collective waiting longer than this raises on the surviving ranks
STOP_GRACE_S = 5       # terminate → kill


class RankFailed(RuntimeError):
    """One rank of a launched group failed; ``.rank`` says which, the message says how."""

    def __init__(self, rank: int, message: str):
        super().__init__(message)
        self.rank = rank


def backend_for(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


def launch(target: str, spec: dict, world_size: int, on_event: Callable[[int, dict], None] | None = None,
           should_stop: Callable[[], bool] | None = None, device: str = "cpu", threads: int = 1) -> list[Any]:
    """Run ``target`` ("module:function", called as fn(rank, world_size, spec, emit)) on ``world_size`` ranks."""
    from multiprocessing.connection import Connection, wait

    import torch.distributed as dist

    from labs.train import Cancelled

    store = dist.TCPStore("127.0.0.1", 0, None, is_master=True, wait_for_workers=False,
                          timeout=timedelta(seconds=PG_TIMEOUT_S))
    procs, conns = [], {}
    try:
        for rank in range(world_size):
            read_fd, write_fd = os.pipe()
            args = json.dumps({"rank": rank, "world_size": world_size, "port": store.port, "target": target,
                               "spec": spec, "fd": write_fd, "device": device, "threads": threads,
                               "parent": os.getpid()})
            procs.append(subprocess.Popen([sys.executable, "-m", "labs.dist", args], pass_fds=(write_fd,),
                                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                          stdin=subprocess.DEVNULL))
            os.close(write_fd)                 # only the rank writes: its death closes the pipe
            conns[Connection(read_fd, writable=False)] = rank
        if on_event:
            on_event(-1, {"type": "ranks", "pids": [p.pid for p in procs], "world_size": world_size,
                          "backend": backend_for(device)})
        results: dict[int, Any] = {}
        while len(results) < world_size:
            if should_stop and should_stop():
                raise Cancelled("cancelled while the ranks were running")
            for conn in wait(list(conns), timeout=0.2):
                rank = conns[conn]
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):
                    del conns[conn]
                    conn.close()
                    if rank not in results:
                        raise _failure(procs, rank, None) from None
                    continue
                if kind == "event" and on_event:
                    on_event(rank, payload)
                elif kind == "result":
                    results[rank] = payload
                elif kind == "error":
                    raise _failure(procs, rank, payload)
        return [results[r] for r in range(world_size)]
    finally:
        stop(procs)
        for conn in conns:
            conn.close()


def _failure(procs, rank: int, error: str | None) -> RankFailed:
    """The first failed rank's message: its own error, or how its process ended. A rank that lost its peer
    fails a moment after the one that died; a rank killed by a signal within that moment is the cause."""
    time.sleep(0.5)
    for r, p in enumerate(procs):
        if p.poll() is not None and p.returncode < 0:
            rank, error = r, None
            break
    if error is None:
        try:
            code = procs[rank].wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            error = f"killed by {name}"
        else:
            error = f"exited with code {code} without a result"
    return RankFailed(rank, f"rank {rank} of {len(procs)} failed: {error}; the other ranks were stopped")


def stop(procs) -> None:
    """Terminate, then kill, then reap every rank still running."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.time() + STOP_GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):   # not Linux: the launcher still stops ranks it sees fail
        pass
    if os.getppid() != parent:          # the parent died before prctl took effect
        os._exit(1)


def _rank_main(a: dict) -> None:
    from multiprocessing.connection import Connection

    _die_with_parent(a["parent"])
    conn = Connection(a["fd"], readable=False)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(143))
    rank, world_size, device = a["rank"], a["world_size"], a["device"]
    try:
        import torch.distributed as dist

        torch.set_num_threads(max(1, a["threads"]))
        store = dist.TCPStore("127.0.0.1", a["port"], None, is_master=False,
                              timeout=timedelta(seconds=PG_TIMEOUT_S))
        kw = {}
        if device.startswith("cuda"):
            kw["device_id"] = torch.device("cuda", rank)
            torch.cuda.set_device(rank)
        dist.init_process_group(backend_for(device), store=store, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=PG_TIMEOUT_S), **kw)
        module, name = a["target"].split(":")
        fn = getattr(importlib.import_module(module), name)
        result = fn(rank, world_size, a["spec"], lambda event: conn.send(("event", event)))
        conn.send(("result", result))
        dist.destroy_process_group()
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the launcher; traceback to stderr
        traceback.print_exc()
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        finally:
            os._exit(1)


# ── counting collectives ────────────────────────────────────────────────────────────────────────────────────

# c10d op -> (collective, which argument holds the full-size tensor); a ring all-reduce moves 2x its size
_OPS = {"_allgather_base_": ("all_gather", 0), "allgather_into_tensor_coalesced_": ("all_gather", 0),
        "allgather_": ("all_gather", 0), "_reduce_scatter_base_": ("reduce_scatter", 1),
        "reduce_scatter_tensor_coalesced_": ("reduce_scatter", 1), "reduce_scatter_": ("reduce_scatter", 1),
        "allreduce_": ("all_reduce", 0), "allreduce_coalesced_": ("all_reduce", 0)}
WEIGHT = {"all_gather": 1, "reduce_scatter": 1, "all_reduce": 2}


def _nbytes(obj) -> int:
    leaves = torch.utils._pytree.tree_leaves(obj)
    return sum(t.numel() * t.element_size() for t in leaves if isinstance(t, torch.Tensor))


class CommCounter:
    """Bytes handed to each kind of collective while ``active``, in the ZeRO paper's units (see
    labs.budget.comm): all-gather = its output, reduce-scatter = its input, all-reduce = 2 x its tensor.

    FSDP2 calls c10d ops from Python; ``mode()`` is a TorchDispatchMode that sees each of them (torch's own
    CommDebugMode counts the same ops, without sizes). DDP's reducer calls the process group from C++, so
    DDP is counted through its comm hook (``ddp_hook``), which sees every gradient bucket it all-reduces.
    """

    def __init__(self):
        self.bytes = {"all_gather": 0, "reduce_scatter": 0, "all_reduce": 0}
        self.calls = {k: 0 for k in self.bytes}
        self.active = False

    def add(self, kind: str, size: int) -> None:
        if self.active:
            self.bytes[kind] += WEIGHT[kind] * size
            self.calls[kind] += 1

    def mode(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = func.__name__.split(".")[0]
                if func.namespace == "c10d" and name in _OPS:
                    kind, arg = _OPS[name]
                    counter.add(kind, _nbytes(args[arg]))
                return func(*args, **(kwargs or {}))

        return _Mode()

    def ddp_hook(self):
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        def hook(process_group, bucket):
            self.add("all_reduce", bucket.buffer().numel() * bucket.buffer().element_size())
            return allreduce_hook(process_group, bucket)

        return hook


if __name__ == "__main__":   # one rank: python -m labs.dist '<json>' (started by launch)
    _rank_main(json.loads(sys.argv[1]))
