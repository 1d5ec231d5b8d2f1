"""The training config: one typed schema (``schema``), its identity hash (``identity``) and the
``cofi.*`` resolvers (``resolvers``). Importing this package registers the schema in Hydra's
ConfigStore (``train_schema``) and the resolvers, so import it before composing ``conf/train.yaml``.
"""

from cofi_lightning.config import resolvers  # noqa: F401  (registers the cofi.* resolvers)
from cofi_lightning.config.identity import config_hash, config_identity, identity_diff
from cofi_lightning.config.resolvers import local_or_hub, shared_dir
from cofi_lightning.config.schema import (
    ABLATIONS,
    STAGES,
    ConfigError,
    DistillConfig,
    FinetuneConfig,
    ModelConfig,
    OptimConfig,
    PathsConfig,
    PruningConfig,
    StageConfig,
    TaskConfig,
    TeacherTrainingConfig,
    TrainConfig,
    load_config,
)

__all__ = [
    "ABLATIONS",
    "STAGES",
    "ConfigError",
    "DistillConfig",
    "FinetuneConfig",
    "ModelConfig",
    "OptimConfig",
    "PathsConfig",
    "PruningConfig",
    "StageConfig",
    "TaskConfig",
    "TeacherTrainingConfig",
    "TrainConfig",
    "config_hash",
    "config_identity",
    "identity_diff",
    "load_config",
    "local_or_hub",
    "shared_dir",
]
