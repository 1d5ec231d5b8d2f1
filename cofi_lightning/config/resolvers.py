"""The ``cofi.*`` OmegaConf resolvers of the training configs (registered on import).

* ``${cofi.shared_dir:}``: ``$COFI_SHARED_DIR``, else ``<repo>/../shared`` (read-only models, data);
* ``${cofi.local_or_hub:<dir>,<hub name>}``: the directory if it exists, else the hub name;
* ``${cofi.default:<value>,<default>}``: ``value`` unless it is null;
* ``${cofi.target_label:<target_sparsity>,<targets>,<constraint>,<target_speedup>}`` and
  ``${cofi.config_hash:}``: what the run prunes to and its identity's short hash, in ``run_name``;
* ``${cofi.data_dir:}`` / ``${cofi.cache_dir:}``: the defaults of ``paths.*``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from cofi_lightning.config.identity import config_hash
from cofi_lightning.data.sources import default_cache_dir, default_data_dir, shared_dir

#: ``{hub name: the local directory tried first}`` of every ``local_or_hub`` that fell back to
#: the hub, so an error about the hub name can say where the local copy was looked for.
_LOOKED_FOR: dict[str, str] = {}


def local_or_hub(local: str, hub_name: str) -> str:
    """``local`` if that directory exists, else the hub name (for users without ``../shared``)."""
    if Path(local).is_dir():
        return local
    _LOOKED_FOR[hub_name] = local
    return hub_name


def looked_for(hub_name: str) -> str | None:
    """The local directory a ``local_or_hub`` tried before resolving to ``hub_name``, if any."""
    return _LOOKED_FOR.get(hub_name)


OmegaConf.register_new_resolver("cofi.shared_dir", shared_dir, replace=True)
OmegaConf.register_new_resolver("cofi.data_dir", default_data_dir, replace=True)
OmegaConf.register_new_resolver("cofi.cache_dir", default_cache_dir, replace=True)
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
