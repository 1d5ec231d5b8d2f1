"""One run end to end: the stage pipeline, run directory and lock, checks at the door, teacher
cache, checkpoints and interruptions, operating points, export (model card, hub)."""
