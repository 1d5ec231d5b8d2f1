"""CoFi's hard-concrete masks: the gate, the masks of a model, the typed ``Masks`` value."""

from cofi_lightning.core.masks.cofi_masks import COFI_INIT_LOG_ALPHA, CoFiMasks
from cofi_lightning.core.masks.hard_concrete import GateConstants, HardConcreteGate
from cofi_lightning.core.masks.types import UNIT_NAMES, Masks

__all__ = [
    "COFI_INIT_LOG_ALPHA",
    "CoFiMasks",
    "GateConstants",
    "HardConcreteGate",
    "Masks",
    "UNIT_NAMES",
]
