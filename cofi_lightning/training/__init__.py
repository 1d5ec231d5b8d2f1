"""Lightning: the CoFi system (LightningModule), its optimizers, metrics, callbacks and
experiment tracking."""
