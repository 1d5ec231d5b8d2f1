"""Lightning: the CoFi system (LightningModule) and the parts a stage gives it, its optimizers,
metrics, callbacks and experiment tracking."""
