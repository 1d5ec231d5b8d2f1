"""The window trigger evaluates each target's window once, at its first entry."""

from __future__ import annotations

from types import SimpleNamespace

from cofi_lightning.training.callbacks import EvaluateOnWindowEntry


class _Scripted(EvaluateOnWindowEntry):
    """The callback with the real sparsity read from a script instead of masks."""

    def __init__(self, values, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.values = iter(values)

    def sparsity(self, module) -> float:
        return next(self.values)


def _run(callback, steps: int) -> list[int]:
    module = SimpleNamespace(masks=object(), pruning_active=lambda: True)
    trainer = SimpleNamespace(accumulate_grad_batches=1, val_check_batch=50, global_step=0)
    for step in range(steps):
        trainer.global_step = step
        callback.on_train_batch_end(trainer, module, None, None, step)
        if trainer.val_check_batch == 1:  # Lightning would validate now
            callback.on_validation_end(trainer, module)
        assert trainer.val_check_batch == 50
    return callback.triggered_steps


def test_each_window_is_evaluated_at_its_first_entry_only():
    # hovering at 0.6's edge (in, out, in, ...), then through to 0.75's window and beyond it
    values = [0.5, 0.595, 0.612, 0.609, 0.611, 0.605, 0.7, 0.745, 0.8, 0.75]
    callback = _Scripted(values, [0.6, 0.75], epsilon=0.01)
    assert _run(callback, len(values)) == [1, 7]


def test_the_entered_windows_survive_a_checkpoint():
    callback = _Scripted([0.6, 0.5], [0.6], epsilon=0.01)
    _run(callback, 1)
    resumed = _Scripted([0.6, 0.61], [0.6], epsilon=0.01)
    resumed.load_state_dict(callback.state_dict())
    resumed.window = None  # left the window before the kill
    assert _run(resumed, 2) == [0]  # no second evaluation of the same window
