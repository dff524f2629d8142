"""The harness that runs a learner's file INSIDE the sandbox, and the wire format both sides speak.

This file is bind-mounted read-only into the sandbox as /sandbox/child.py and run there with the
project's interpreter; nothing else of the project is visible, so it imports only the standard library
and torch. The grading process imports the same file for `encode` / `decode` (one copy of the format).

    parent (grader)                         child (this file, in bwrap)
    spawn ───────────────────────────────▶  import torch (overlaps the parent's own imports)
                                            frame {"ready": true}  ──▶
    frame {code, cases, limits}  ───────▶   write /tmp/work/solution.py, drop to an unprivileged uid,
                                            set rlimits, import the file, call it on every case
                              ◀──────────   frame {"results": [{out, grads, error, seconds}, ...]}

A frame is b"PLDR" + 4-byte big-endian header length + JSON header + the tensors' raw bytes. Tensors
travel as {"__t__": index, "dtype", "shape"}; the decoder checks every dtype against a whitelist and
every size against the bytes it was given, so a hostile child cannot make the parent unpickle anything.
Learner prints go to stderr (captured and capped by the parent); the frames use the original stdout.
"""
from __future__ import annotations

import json
import os
import struct
import sys
import time

MAGIC = b"PLDR"
DTYPES = ("float32", "float64", "float16", "bfloat16", "uint8", "int8", "int16", "int32", "int64", "bool")


class WireError(ValueError):
    pass


# ---------------------------------------------------------------------------------------------
# Wire format (both sides)
# ---------------------------------------------------------------------------------------------
def _flatten(obj, blobs: list):
    torch = sys.modules.get("torch")                    # only loaded when the job or the learner needs it
    if torch is not None and isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        name = str(t.dtype).replace("torch.", "")
        if name not in DTYPES:
            return {"__obj__": f"torch.Tensor of dtype {name}", "repr": f"shape {tuple(t.shape)}"}
        flat = t.reshape(-1)
        if flat.numel() and flat.stride(0) != 1:                # e.g. expand() of a single element
            flat = torch.empty(flat.shape, dtype=flat.dtype).copy_(flat)
        raw = flat.view(torch.uint8) if t.dtype != torch.bool else flat.to(torch.uint8)
        blobs.append(raw.numpy().tobytes())
        return {"__t__": len(blobs) - 1, "dtype": name, "shape": list(t.shape)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, blobs) for v in obj]}
    if isinstance(obj, list):
        return [_flatten(v, blobs) for v in obj]
    if isinstance(obj, dict):
        return {"__dict__": [[_flatten(k, blobs), _flatten(v, blobs)] for k, v in obj.items()]}
    return {"__obj__": type(obj).__module__ + "." + type(obj).__qualname__, "repr": repr(obj)[:200]}


def encode(obj) -> bytes:
    blobs: list[bytes] = []
    header = json.dumps({"body": _flatten(obj, blobs), "sizes": [len(b) for b in blobs]}).encode()
    return MAGIC + struct.pack(">I", len(header)) + header + b"".join(blobs)


def _unflatten(obj, blobs: list):
    if isinstance(obj, list):
        return [_unflatten(v, blobs) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__t__" in obj:
        import torch

        dtype, shape = obj.get("dtype"), obj.get("shape")
        if dtype not in DTYPES or not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise WireError(f"bad tensor header {str(obj)[:100]}")
        tdtype = getattr(torch, dtype)
        raw = blobs[obj["__t__"]] if isinstance(obj["__t__"], int) and 0 <= obj["__t__"] < len(blobs) else None
        n = 1
        for s in shape:
            n *= s
        item = 1 if tdtype == torch.bool else torch.empty((), dtype=tdtype).element_size()
        if raw is None or len(raw) != n * item:
            raise WireError(f"tensor bytes do not match shape {shape} dtype {dtype}")
        if n == 0:
            return torch.empty(shape, dtype=tdtype)
        flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        t = flat.to(torch.bool) if tdtype == torch.bool else flat.view(tdtype)
        return t.reshape(shape)
    if "__tuple__" in obj:
        return tuple(_unflatten(v, blobs) for v in obj["__tuple__"])
    if "__dict__" in obj:
        return {_hashable(_unflatten(k, blobs)): _unflatten(v, blobs) for k, v in obj["__dict__"]}
    if "__obj__" in obj:
        return Opaque(str(obj["__obj__"]), str(obj.get("repr", "")))
    return {k: _unflatten(v, blobs) for k, v in obj.items()}


def _hashable(k):
    return k if isinstance(k, (str, int, float, bool, type(None), tuple)) else repr(k)


class Opaque:
    """Something the learner returned that is not a tensor, number, string or container (e.g. a numpy array)."""

    def __init__(self, type_name: str, text: str):
        self.type_name, self.text = type_name, text

    def __repr__(self) -> str:
        return f"<{self.type_name}: {self.text}>"


def decode(data: bytes):
    if len(data) < 8 or data[:4] != MAGIC:
        raise WireError("not a frame")
    n = struct.unpack(">I", data[4:8])[0]
    header = json.loads(data[8:8 + n])
    sizes, blobs, pos = header["sizes"], [], 8 + n
    for s in sizes:
        if not isinstance(s, int) or s < 0 or pos + s > len(data):
            raise WireError("truncated frame")
        blobs.append(data[pos:pos + s])
        pos += s
    return _unflatten(header["body"], blobs)


def split_frames(buf: bytes) -> tuple[list[bytes], bytes]:
    """Complete frames at the start of `buf`, and the incomplete rest."""
    frames = []
    while len(buf) >= 8:
        if buf[:4] != MAGIC:
            raise WireError("stream out of sync")
        n = struct.unpack(">I", buf[4:8])[0]
        if len(buf) < 8 + n:
            break
        header = json.loads(buf[8:8 + n])
        total = 8 + n + sum(int(s) for s in header["sizes"])
        if len(buf) < total:
            break
        frames.append(buf[:total])
        buf = buf[total:]
    return frames, buf


def read_frame(f) -> bytes:
    head = f.read(8)
    if len(head) < 8 or head[:4] != MAGIC:
        raise WireError("no job frame on stdin")
    n = struct.unpack(">I", head[4:8])[0]
    header = f.read(n)
    rest = f.read(sum(json.loads(header)["sizes"]))
    return head + header + rest


# ---------------------------------------------------------------------------------------------
# The child (runs only inside the sandbox)
# ---------------------------------------------------------------------------------------------
def _drop_privileges(uid: int) -> None:
    """Root in the sandbox (the server runs as root, bwrap made no user namespace): become `uid`, a number no
    other process uses, so RLIMIT_NPROC counts only this sandbox's processes and no capability remains."""
    if os.getuid() != 0:
        return
    os.chown("/tmp/work", uid, uid)
    os.chown("/tmp/work/solution.py", uid, uid)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getuid() == 0 or os.geteuid() == 0:
        raise SystemExit("could not drop root")


def _vm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _set_limits(lim: dict) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (lim["nproc"], lim["nproc"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (lim["fsize"], lim["fsize"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    used = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    cpu = int(used + lim["cpu_s"]) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    vm = _vm_bytes() + lim["memory"]
    resource.setrlimit(resource.RLIMIT_AS, (vm, vm))


def _trim_traceback(exc: BaseException) -> str:
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith("solution.py")]
    lines = traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc)
    return "".join(lines)[-2000:]


def call_case(fn, case: dict):
    import contextlib

    torch = sys.modules.get("torch")
    args, kwargs = list(case.get("args", [])), dict(case.get("kwargs", {}))
    grad = case.get("grad")
    leaves = {}
    if grad:
        for pos in grad["wrt"]:                        # argument positions (int) or keyword names (str)
            t = (args[pos] if isinstance(pos, int) else kwargs[pos]).detach().clone().requires_grad_(True)
            leaves[str(pos)] = t
            if isinstance(pos, int):
                args[pos] = t
            else:
                kwargs[pos] = t
    repeat = int(case.get("repeat", 1))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        with (torch.enable_grad() if grad else torch.no_grad()) if torch else contextlib.nullcontext():
            out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    result = {"out": out, "seconds": best}
    if grad:
        if torch is None or not isinstance(out, torch.Tensor) or not out.requires_grad:
            result["grad_error"] = "the output does not depend on the inputs through autograd (no grad_fn)"
        else:
            out.backward(grad["dy"])
            result["grads"] = {k: (v.grad if v.grad is not None else None) for k, v in leaves.items()}
    return result


def main() -> int:
    uid = int(sys.argv[1]) if len(sys.argv) > 1 else 65534
    out = os.fdopen(os.dup(1), "wb")                    # frames go here ...
    os.dup2(2, 1)                                       # ... and print() goes to stderr, which the parent caps
    sys.stdout = sys.stderr
    if sys.argv[2:3] == ["warm"]:                       # the usual case: torch loads while the parent works
        import torch

        torch.set_num_threads(1)
    import resource  # before the uid drop, like every module the harness needs
    out.write(encode({"ready": True}))
    out.flush()
    job = decode(read_frame(sys.stdin.buffer))
    os.makedirs("/tmp/work", exist_ok=True)
    path = "/tmp/work/solution.py"
    with open(path, "w", encoding="utf-8") as f:
        f.write(job["code"])
    os.chdir("/tmp/work")
    _drop_privileges(uid)
    _set_limits(job["limits"])
    sys.path[:0] = ["/tmp/work"]
    import importlib.util

    results = []
    try:
        spec = importlib.util.spec_from_file_location("solution", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    except BaseException as exc:  # noqa: BLE001 - the learner's file may raise anything, SystemExit included
        out.write(encode({"import_error": _trim_traceback(exc) or repr(exc)}))
        out.flush()
        return 0
    me = os.getpid()
    for case in job["cases"]:
        fn = getattr(mod, case["fn"], None)
        if not callable(fn):
            results.append({"error": f"the file defines no function {case['fn']}()"})
            continue
        try:
            results.append(call_case(fn, case))
        except MemoryError:
            results.append({"error": "MemoryError: the memory limit was reached", "memory": True})
        except BaseException as exc:  # noqa: BLE001
            text = _trim_traceback(exc)
            results.append({"error": text, "memory": "can't allocate memory" in text})
        finally:
            if os.getpid() != me:                       # a process the submission forked: never reports
                os._exit(0)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.write(encode({"results": results, "cpu_s": usage.ru_utime + usage.ru_stime}))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
