"""labs.dist.launch without a model: a rank that raises while its peer waits in a collective fails the launch with
that rank's own message, the waiting rank stopped and reaped (the success path is the fsdp lab's test)."""
import time

import pytest

from labs.dist import RankFailed, launch
from labs.jobs import _alive


def _sum_ranks(rank, world_size, spec, emit):
    import torch
    import torch.distributed as dist

    if spec.get("raise_on") == rank:
        raise RuntimeError(f"boom on rank {rank}")
    x = torch.tensor([float(rank + 1)])
    dist.all_reduce(x)                                  # the other rank waits here if its peer raised
    emit({"type": "step", "rank": rank})
    return {"sum": x.item(), "rank": rank}


def test_a_rank_that_raises_fails_the_launch_with_its_message():
    t0, pids = time.time(), []
    with pytest.raises(RankFailed) as err:
        launch("tests.labs.test_dist:_sum_ranks", {"raise_on": 1}, 2,
               on_event=lambda r, e: pids.extend(e.get("pids", [])))
    assert err.value.rank == 1 and "RuntimeError: boom on rank 1" in str(err.value)
    assert time.time() - t0 < 60
    assert len(pids) == 2 and not any(_alive(p) for p in pids)          # rank 0 was stopped and reaped
