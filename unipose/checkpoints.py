"""What the project's training runs share on top of transformers' `Trainer` checkpoints: writing each one whole,
finding the checkpoint to resume from, refusing to resume a different run, and progress messages on the command
line."""

from __future__ import annotations

import json
import logging as std_logging
import os
import shutil
from pathlib import Path

from transformers import TrainerCallback, TrainerState
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import (
    PREFIX_CHECKPOINT_DIR,
    TrainOutput,
    get_last_checkpoint,
    rotate_checkpoints,
)

logger = std_logging.getLogger(__name__)

TRAINER_STATE_NAME = "trainer_state.json"


# Where a checkpoint is written before it is renamed into place.
STAGING_DIR = ".staging"


class StagedCheckpointsMixin:
    """
    For a transformers `Trainer`: each checkpoint is written under `output_dir/.staging/` and renamed to
    `checkpoint-N` once every process has written its part, so that a run killed while saving leaves no partial
    checkpoint for `resume_from_checkpoint="latest"` to pick up (the rerun resumes from the one before).

    Example:

    ```python
    >>> class MyTrainer(StagedCheckpointsMixin, Trainer): ...
    ```
    """

    _staging_root = None

    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, **kwargs):
        """`Trainer.train`, except that a checkpoint at its run's last step is not trained from: `Trainer` would
        take one step past `max_steps` before it checks it, and change the finished run's weights at each rerun.
        The model gets that checkpoint's weights (the best checkpoint's with `load_best_model_at_end`) instead, and
        the `TrainOutput` has no `training_loss` (`None`): no step was trained."""
        checkpoint = resume_from_checkpoint
        if checkpoint is True:  # as `Trainer` reads it: the newest checkpoint of `output_dir`
            checkpoint = get_last_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
        state = finished_run_state(checkpoint, self.args.max_steps) if isinstance(checkpoint, str) else None
        if state is None:
            return super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial, **kwargs)
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            raise ValueError(
                f"`resume_from_checkpoint` {checkpoint!r} is the last checkpoint of a finished run (step "
                f"{state.global_step}): there is nothing left to train, and a sharded engine (DeepSpeed, FSDP) loads "
                "weights only by training on. Its outputs were written when it finished (had it stopped before, the "
                "checkpoint holds its final state)."
            )
        self.state = state
        best = state.best_model_checkpoint if self.args.load_best_model_at_end else None
        self._load_from_checkpoint(best if best and os.path.isdir(best) else checkpoint)
        logger.warning(
            f"{checkpoint} ends the run (step {state.global_step}): nothing left to train; the model holds its "
            "weights."
        )
        return TrainOutput(state.global_step, None, {})

    def _get_output_dir(self, trial) -> str:
        # While a checkpoint is written, `Trainer._save_checkpoint` writes into the staging directory.
        return self._staging_root if self._staging_root is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = self._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging_root = os.path.join(run_dir, STAGING_DIR)
        staging, final = os.path.join(staging_root, name), os.path.join(run_dir, name)
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)  # left by a run killed while saving
        self.accelerator.wait_for_everyone()
        self._staging_root = staging_root
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_root = None
        # Every process writes its random state into the checkpoint: rename once all are done.
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            if self.state.best_model_checkpoint == staging:  # the best so far: its saved state names it too
                self.state.best_model_checkpoint = final
                self.state.save_to_json(os.path.join(staging, TRAINER_STATE_NAME))
            if os.path.isdir(final):  # the same step saved again, by a resumed run
                shutil.rmtree(final)
            os.replace(staging, final)
            shutil.rmtree(staging_root, ignore_errors=True)
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
        self.accelerator.wait_for_everyone()


def resolve_trainer_checkpoint(
    resume_from_checkpoint: str | None, output_dir: str | os.PathLike
) -> str | None:
    """For a transformers `Trainer`: `latest` (or `true`) -> the newest `checkpoint-STEP` folder of
    `output_dir`, `None` when there is none yet (so that a preemptible job reruns one command); a path as
    given. Without either, a new run: refused where `output_dir` holds another run's checkpoints, which its
    checkpoint rotation would delete and a later `latest` would resume as this run's."""
    latest = get_last_checkpoint(str(output_dir)) if os.path.isdir(output_dir) else None
    if resume_from_checkpoint in ("latest", "true", "True"):
        return latest
    if not resume_from_checkpoint and latest is not None:
        raise ValueError(
            f"`output_dir` {str(output_dir)!r} holds checkpoints of an earlier run ({os.path.basename(latest)}): "
            "continue it with `--resume_from_checkpoint latest`, or start this run in another `output_dir` (or "
            "delete them)."
        )
    return resume_from_checkpoint


def finished_run_state(checkpoint: str | os.PathLike, max_steps: int) -> TrainerState | None:
    """The `TrainerState` of `checkpoint` if a run of `max_steps` steps ends there (with `max_steps` <= 0, set by
    epochs: the steps of the run that wrote it), else `None`."""
    path = Path(checkpoint) / TRAINER_STATE_NAME
    if not path.is_file():
        return None
    state = TrainerState.load_from_json(str(path))
    last_step = max_steps if max_steps > 0 else state.max_steps
    return state if 0 < last_step <= state.global_step else None


class RunSignature(TrainerCallback, ExportableState):
    """
    What fixes a run's batch order, random draws and step count (seeds, batch size, data size, steps). Given
    to the `Trainer` as a callback, it travels in every checkpoint's `trainer_state.json` (as a stateful
    callback), so that [`check_resumable`] refuses to resume a different run instead of silently mixing two.

    Example:

    ```python
    >>> signature = RunSignature(seed=args.seed, train_batch_size=16, num_train_poses=len(train_dataset))
    >>> trainer = Trainer(..., callbacks=[signature])  # doctest: +SKIP
    >>> check_resumable(checkpoint, signature)  # before trainer.train(resume_from_checkpoint=checkpoint)
    ```
    """

    def __init__(self, **signature):
        self.signature = signature

    def state(self) -> dict:
        return {"args": self.signature, "attributes": {}}


def check_resumable(checkpoint: str | os.PathLike, signature: RunSignature) -> None:
    """Raises `ValueError` when `checkpoint` was written by a run whose [`RunSignature`] differs from
    `signature` (naming each difference), `FileNotFoundError` when it is not a `Trainer` checkpoint."""
    path = Path(checkpoint) / TRAINER_STATE_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"`resume_from_checkpoint` {str(checkpoint)!r} is not a Trainer checkpoint: "
            f"{TRAINER_STATE_NAME} is missing. Give a `checkpoint-STEP` folder of this run, or 'latest'."
        )
    callbacks = json.loads(path.read_text(encoding="utf-8")).get("stateful_callbacks", {})
    saved = callbacks[RunSignature.__name__]["args"] if RunSignature.__name__ in callbacks else None
    check_same_run(saved, signature, repr(str(checkpoint)))


def check_same_run(saved: dict | None, signature: RunSignature, source: str) -> None:
    """Raises `ValueError` when the signature `saved` with what `source` names (a checkpoint, a finished part
    of a run) is missing or differs from `signature`, naming each difference."""
    if saved is None:
        raise ValueError(f"{source} has no run signature: it was not written by this training script.")
    mismatched = {
        key: (saved.get(key), value) for key, value in signature.signature.items() if saved.get(key) != value
    }
    if mismatched:
        details = ", ".join(
            f"{key}: checkpoint {old!r} vs now {new!r}" for key, (old, new) in mismatched.items()
        )
        raise ValueError(
            f"Cannot resume exactly from {source}: the run differs in {details}. Use the settings "
            "the checkpoint was trained with, or start a new run in another `output_dir`."
        )


def enable_progress_logging() -> None:
    """Shows this package's INFO messages (losses, validation metrics) on stderr; for command-line runs."""
    package_logger = std_logging.getLogger(__name__.split(".")[0])
    package_logger.setLevel(std_logging.INFO)
    if not any(getattr(handler, "_unipose_progress", False) for handler in package_logger.handlers):
        handler = std_logging.StreamHandler()
        handler.setFormatter(std_logging.Formatter("[%(name)s] %(message)s"))
        handler._unipose_progress = True
        package_logger.addHandler(handler)


__all__ = [
    "STAGING_DIR",
    "RunSignature",
    "StagedCheckpointsMixin",
    "check_resumable",
    "check_same_run",
    "enable_progress_logging",
    "finished_run_state",
    "resolve_trainer_checkpoint",
]
