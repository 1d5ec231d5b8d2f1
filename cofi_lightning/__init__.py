"""cofi-lightning: CoFi structured pruning (Xia, Zhong & Chen, ACL 2022) on Lightning and Hydra.

Importing the package registers the prunable BERT (``model_type="cofi_bert"``) with the
``transformers`` Auto classes, so exported compact models load through
``AutoModelForSequenceClassification`` and
``AutoModelForQuestionAnswering``.
"""

from cofi_lightning import modeling as modeling  # noqa: F401  (registers the Auto classes)

__version__ = "0.1.0"
