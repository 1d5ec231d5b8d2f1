"""The method itself, without Lightning: gates and masks, the constraint (target schedule,
Lagrangian, expected latency), distillation and the baselines."""
