"""Task data for CoFi: GLUE and SQuAD v1.1 DataModules over a local Parquet mirror or the hub.

``tasks.py`` declares the nine tasks; ``sources.py`` finds and validates raw splits (and registers
the ``cofi.data_dir`` / ``cofi.cache_dir`` OmegaConf resolvers used by ``conf/paths/default.yaml``);
``base.py`` holds the feature cache and padding; ``glue.py`` and ``squad.py`` the DataModules;
``squad_features.py`` the SQuAD window arithmetic (``cofi_lightning.tools.prepare`` writes a
mirror from the hub).
"""

from cofi_lightning.data.base import PadCollator, TaskDataModule, tokenizer_fingerprint
from cofi_lightning.data.glue import GlueDataModule
from cofi_lightning.data.sources import (
    DataError,
    default_cache_dir,
    default_data_dir,
    load_split,
    shared_dir,
)
from cofi_lightning.data.squad import SquadDataModule
from cofi_lightning.data.tasks import GLUE_TASKS, TASKS, TaskSpec, get_task

__all__ = [
    "DataError",
    "GLUE_TASKS",
    "GlueDataModule",
    "PadCollator",
    "SquadDataModule",
    "TASKS",
    "TaskDataModule",
    "TaskSpec",
    "default_cache_dir",
    "default_data_dir",
    "get_task",
    "load_split",
    "shared_dir",
    "tokenizer_fingerprint",
]
