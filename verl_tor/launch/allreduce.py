"""One all-reduce across this node's GPUs (NCCL) or CPU processes (Gloo), as the preflight's check.

    python -m verl_tor.launch.allreduce [--backend nccl] [--world-size 8] [--numel 8388608]

Starts ``--world-size`` processes (torch.multiprocessing), each on its own GPU under NCCL, that sum a 32 MB tensor
holding their rank + 1 (large enough for NCCL's bulk protocols, not only its small-message path) and check the
result, ``n (n + 1) / 2``, exactly. Prints ``all-reduce ok`` and exits 0, or dies with the error. Run it with
``NCCL_DEBUG=INFO`` to see the transports NCCL chose. The preflight runs it with a timeout, since a broken
peer-to-peer path usually hangs rather than fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path


def _rank(rank: int, world_size: int, backend: str, init_file: str, numel: int) -> None:
    import torch
    import torch.distributed as dist

    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend, init_method=f"file://{init_file}", rank=rank, world_size=world_size, timeout=timedelta(seconds=120)
    )
    try:
        tensor = torch.full((numel,), float(rank + 1), device=device)
        dist.all_reduce(tensor)
        expected = world_size * (world_size + 1) / 2
        wrong = int((tensor != expected).sum().item())
        if wrong:
            raise RuntimeError(f"rank {rank}: {wrong} of {numel} elements differ from {expected}")
    finally:
        dist.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verl_tor.launch.allreduce",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", default="nccl", choices=("nccl", "gloo"))
    parser.add_argument("--world-size", type=int, default=8, help="processes (GPUs under NCCL)")
    parser.add_argument("--numel", type=int, default=8 * 1024 * 1024, help="float32 elements per rank")
    args = parser.parse_args(argv)
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="verl-tor-allreduce-") as folder:
        init_file = str(Path(folder) / "init")
        mp.spawn(_rank, args=(args.world_size, args.backend, init_file, args.numel), nprocs=args.world_size)
    print(f"all-reduce ok: {args.backend}, {args.world_size} processes, {args.numel} elements each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
