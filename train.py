"""CoFi end to end (teacher -> prune -> finetune -> export) in one Hydra run directory.

    python train.py task=sst2 model.pretrained=<hf name or dir> pruning.target_sparsity=0.95
    python train.py experiment=demo            # the whole pipeline on CPU in minutes
    python train.py -m experiment=glue_small_s95 task=rte 'ablation=glob(*)'

Re-running the same command resumes where it stopped. See conf/train.yaml.
"""

import logging

import hydra
from omegaconf import DictConfig

import cofi_lightning.config  # noqa: F401  (registers the config schema and the cofi.* resolvers)
from cofi_lightning.pipeline import train

log = logging.getLogger("train")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Run the pipeline; returns the exported model's main metric (what Hydra sweepers optimise)."""
    try:
        results = train(cfg)
    except Exception:
        # Into the job's own train.log: a multirun goes on with the next job and reports failures
        # only at its end, and `python -m cofi_lightning.report` reads the reason from this log.
        log.exception("job failed")
        raise
    return results["pruned"][results["main_metric"]] if results else None


if __name__ == "__main__":
    main()
