"""CoFi end to end (teacher -> prune -> finetune -> export) in one Hydra run directory.

    python train.py task=sst2 model.pretrained=<hf name or dir> pruning.target_sparsity=0.95
    python train.py experiment=demo            # the whole pipeline on CPU in minutes
    python train.py -m experiment=glue_small_s95 task=rte 'ablation=glob(*)'

Re-running the same command resumes where it stopped. See conf/train.yaml.
"""

import logging
import sys
import traceback
import warnings

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import cofi_lightning.config  # noqa: F401  (registers the config schema and the cofi.* resolvers)
from cofi_lightning.config import ConfigError
from cofi_lightning.data import DataError
from cofi_lightning.run.hub import HubPushError
from cofi_lightning.run.interrupts import EXIT_INTERRUPTED, RunInterrupted
from cofi_lightning.run.pipeline import train
from cofi_lightning.run.preflight import ModelSourceError
from cofi_lightning.run.results import Results
from cofi_lightning.run.rundir import RunDirError

log = logging.getLogger("train")
# A deprecation inside Lightning itself, repeated at every fit; nothing a user can act on.
warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)`", FutureWarning)

#: Mistakes in a setting, the data or a path: a short message, no traceback on the console.
USER_ERRORS = (ConfigError, DataError, ModelSourceError, RunDirError, HubPushError)


def _to_log_file(text: str) -> None:
    """Write ``text`` into the job's ``train.log`` only (not the console)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.stream.write(text)
            handler.flush()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Run the pipeline; returns the exported model's main metric (what Hydra sweepers optimise;
    for a sparsity path, the mean over its targets: see ``Results.objective``)."""
    try:
        results = train(cfg)
    except RunInterrupted as err:
        # Not done, in a single run or a sweep: one line and exit status 143, as a SIGTERM's.
        log.error("%s", err)
        sys.exit(EXIT_INTERRUPTED)
    except USER_ERRORS as err:
        # Once, short, naming the setting; the traceback goes to train.log for whoever needs it.
        log.error("%s: %s", type(err).__name__, err)
        _to_log_file(traceback.format_exc())
        if HydraConfig.get().mode == RunMode.RUN:
            sys.exit(1)
        raise  # a multirun records the failure and goes on with the next job
    except Exception:
        # The traceback into the job's own train.log (the report reads the reason from it); Hydra
        # prints it on the console, once.
        _to_log_file(traceback.format_exc())
        raise
    return Results.from_dict(results).objective() if results else None


if __name__ == "__main__":
    main()
