"""Latency of a pruned model against its unpruned counterpart (``python -m
cofi_lightning.tools.bench``; the protocol, CoFi's, is in docs/speed.md): ``sources.py`` finds and
loads the two models, ``compare.py`` times (``cofi_lightning.latency.timing``) and counts them,
``__main__.py`` is the command."""
