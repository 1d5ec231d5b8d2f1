"""The ``cofi.*`` OmegaConf resolvers of the training configs (registered on import).

* ``${cofi.shared_dir:}``: ``$COFI_SHARED_DIR``, else ``<repo>/../shared`` (read-only models, data);
* ``${cofi.local_or_hub:<dir>,<hub name>}``: the directory if it exists, else the hub name;
* ``${cofi.default:<value>,<default>}``: ``value`` unless it is null;
* ``${cofi.target_label:<target_sparsity>,<targets>,<constraint>,<target_speedup>}``: what the run
  prunes to, ``s0.6`` for one sparsity target, ``s0.6-0.75-0.9`` for a sparsity path
  (``pruning.targets``), ``x2.0`` for a speed target (``pruning.constraint=latency``), used in the
  default ``run_name`` and the W&B tags;
* ``${cofi.config_hash:}``: the short hash of the config's identity
  (``cofi_lightning.config.identity``), used in the default ``run_name``.

``cofi.data_dir`` / ``cofi.cache_dir`` are registered by ``cofi_lightning.data.sources``.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

import cofi_lightning.data.sources  # noqa: F401  (registers cofi.data_dir / cofi.cache_dir)
from cofi_lightning.config.identity import config_hash

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> str:
    """``$COFI_SHARED_DIR``, else ``<repo>/../shared`` (the read-only models and data)."""
    return os.environ.get("COFI_SHARED_DIR") or str(REPO_ROOT.parent / "shared")


def local_or_hub(local: str, hub_name: str) -> str:
    """``local`` if that directory exists, else the hub name (for users without ``../shared``)."""
    return local if Path(local).is_dir() else hub_name


OmegaConf.register_new_resolver("cofi.shared_dir", shared_dir, replace=True)
OmegaConf.register_new_resolver("cofi.local_or_hub", local_or_hub, replace=True)
OmegaConf.register_new_resolver(
    "cofi.default", lambda value, default: default if value is None else value, replace=True
)


def target_label(
    target_sparsity: float, targets, constraint: str = "params", target_speedup: float | None = None
) -> str:
    """The run name's target: ``x<speedup>`` under the latency constraint (its sparsity target
    is unused), else ``s`` and the single sparsity target, or the path's targets joined by ``-``."""
    if constraint == "latency":
        return f"x{target_speedup}"
    if targets is None or len(targets) == 0:
        return f"s{target_sparsity}"
    if len(targets) == 1:
        return f"s{targets[0]}"
    return "s" + "-".join(f"{float(t):g}" for t in targets)


OmegaConf.register_new_resolver("cofi.target_label", target_label, replace=True)
OmegaConf.register_new_resolver(
    "cofi.config_hash", lambda *, _root_: config_hash(_root_), replace=True
)
