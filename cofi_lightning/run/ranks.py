"""The rank helpers of a run: who writes (global rank 0) and where the others wait (below every
module of ``cofi_lightning.run``)."""

from __future__ import annotations

from lightning.fabric.utilities.rank_zero import rank_zero_only


def is_global_zero() -> bool:
    """Whether this process is global rank 0 (also before a trainer exists: Lightning reads the
    rank from the launcher's environment)."""
    return getattr(rank_zero_only, "rank", 0) == 0


def barrier() -> None:
    """Wait for every DDP rank (no-op in a single process): rank 0 writes, the others read."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
