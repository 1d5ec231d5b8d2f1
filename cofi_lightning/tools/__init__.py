"""Command-line tools over finished runs: speed benchmark, sweep report, data mirror, the
exactness demo. Nothing in training or the run pipeline imports them."""
