"""A check that every DDP rank trains the same sub-network: per-step digests of the sampled masks.

:class:`MaskDigest` is a test callback (``+callbacks.mask_digest._target_=
tests.training.mask_digest.MaskDigest``: ``train.py`` runs from the repository root, so it imports)
that writes ``{global_step: sha256 of the masks}`` of each training batch to
``<stage dir>/mask_digests_rank<r>.json``. Identical files across ranks prove the masks were shared
(the original code let ranks sample different masks, CoFiPruning issue #16).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightning as L


class MaskDigest(L.Callback):
    """Record a digest of ``module.current_masks`` after every training batch, per rank."""

    def __init__(self) -> None:
        self.digests: dict[int, str] = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        masks = getattr(module, "current_masks", None)
        if masks is None:
            return
        h = hashlib.sha256()
        for unit, t in masks.items():
            h.update(unit.encode())
            h.update(t.detach().float().cpu().numpy().tobytes())
        self.digests[trainer.global_step] = h.hexdigest()

    def on_train_end(self, trainer, module) -> None:
        path = Path(trainer.default_root_dir) / f"mask_digests_rank{trainer.global_rank}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.digests, indent=1))
