"""The training config: one typed schema, its identity hash and the ``cofi.*`` resolvers. Importing
this package registers the schema in Hydra's ConfigStore (``train_schema``) and the resolvers, so
import it before composing ``conf/train.yaml``.
"""

from cofi_lightning.config import resolvers  # noqa: F401  (registers the cofi.* resolvers)
from cofi_lightning.config.checks import ConfigError
from cofi_lightning.config.identity import config_hash, config_identity
from cofi_lightning.config.resolvers import local_or_hub
from cofi_lightning.config.schema import ABLATIONS, STAGES, OptimConfig, TrainConfig, load_config
from cofi_lightning.config.stage_configs import DistillConfig, PruningConfig, StageConfig

__all__ = [
    "ABLATIONS",
    "STAGES",
    "ConfigError",
    "DistillConfig",
    "OptimConfig",
    "PruningConfig",
    "StageConfig",
    "TrainConfig",
    "config_hash",
    "config_identity",
    "load_config",
    "local_or_hub",
]
