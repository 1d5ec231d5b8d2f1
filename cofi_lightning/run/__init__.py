"""One run end to end: the stage pipeline, run directory and lock, checks at the door, teacher
cache, checkpoints and interruptions, seeding and ranks, operating points, typed results, export
(model card, hub)."""
