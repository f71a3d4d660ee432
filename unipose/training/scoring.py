"""
A transformers `Trainer` whose evaluation scores the whole evaluation set at once.

The pose tokenizer's metrics (codebook usage and perplexity over all validation poses) and the retrieval
models' recalls (each query ranked against every candidate) are not averages of batch losses, so their
trainers replace `Trainer.evaluate`'s prediction loop with one `score` of the whole set. The scores reach the
logs and the callbacks (early stopping, best-checkpoint selection) as `Trainer.evaluate`'s metrics would.
"""

from __future__ import annotations

import torch
from transformers import Trainer

from ..checkpoints import StagedCheckpointsMixin


class WholeSetScoringTrainer(StagedCheckpointsMixin, Trainer):
    """
    The transformers [`~transformers.Trainer`] with an `evaluate` that calls [`score`] once on the whole
    evaluation dataset, with the unwrapped model in eval mode and no gradients, and logs its scores under
    `metric_key_prefix`. Subclasses implement `score`. Checkpoints are written whole ([`StagedCheckpointsMixin`]).
    """

    def score(self, model: torch.nn.Module, dataset) -> dict[str, float]:
        """The metrics of `model` (unwrapped, in eval mode) on the records of `dataset`."""
        raise NotImplementedError(f"{type(self).__name__} must implement `score(model, dataset)`.")

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        if dataset is None:
            raise ValueError(
                f"`{type(self).__name__}.evaluate` needs records to score: give `eval_dataset` to the trainer or "
                "to `evaluate`."
            )
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                scores = self.score(model, dataset)
        finally:
            model.train(was_training)
        metrics = {f"{metric_key_prefix}_{name}": value for name, value in scores.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
