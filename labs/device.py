"""Where labs run: CUDA when present, else CPU; and what that device is called on a page."""
from __future__ import annotations

import os

import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """``prefer`` or ``PEFTLAB_DEVICE`` ("cpu"/"cuda") overrides the automatic choice."""
    want = (prefer or os.environ.get("PEFTLAB_DEVICE", "")).strip().lower()
    if want == "cpu":
        return torch.device("cpu")
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device = {want!r} requested but CUDA is not available: allowed cpu")
    if want.startswith("cuda") or torch.cuda.is_available():
        return torch.device(want if want.startswith("cuda") else "cuda")
    return torch.device("cpu")


def describe(device: torch.device | None = None) -> str:
    device = device or pick_device()
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"CUDA: {p.name}, {p.total_memory / 2**30:.0f} GiB"
    return f"CPU: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def configure_threads() -> int:
    """CPU threads for torch: ``PEFTLAB_THREADS`` if set, else the cores the load average leaves free.

    On a busy machine more threads than free cores make every step many times slower (the threads
    spin waiting for each other), so a lab backs off to what is actually available, never below 1.
    """
    want = os.environ.get("PEFTLAB_THREADS")
    cores = os.cpu_count() or 1
    if want and want.isdigit() and int(want) > 0:
        n = int(want)
    else:
        try:
            busy = os.getloadavg()[0]
        except OSError:
            busy = 0.0
        n = max(1, min(cores, round(cores - busy + 0.5)))
    torch.set_num_threads(n)
    return n
