"""Task data for CoFi: the task registry (``tasks.py``), raw splits from a local Parquet mirror or
the hub (``sources.py``), the feature cache and loaders (``base.py``, ``loaders.py``) and the GLUE
and SQuAD DataModules (``glue.py``, ``squad.py``, ``squad_features.py``).
"""

from cofi_lightning.data.glue import GlueDataModule
from cofi_lightning.data.sources import DataError, load_split, shared_dir
from cofi_lightning.data.squad import SquadDataModule
from cofi_lightning.data.tasks import get_task

__all__ = [
    "DataError",
    "GlueDataModule",
    "SquadDataModule",
    "get_task",
    "load_split",
    "shared_dir",
]
