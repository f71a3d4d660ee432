"""Checkpoint folders, batch order and progress messages of the project's own training loops (stage 0,
retrieval models).

A checkpoint is a `checkpoint-STEP` folder, written under a temporary name and renamed when complete, holding
the model's `save_pretrained` files and `training_state.pt` (optimizer, scheduler, RNG states, step), which
loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from transformers.utils import logging

from .files import write_json_atomically  # noqa: F401  (re-exported for the training loops)

logger = logging.get_logger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
TRAINING_STATE_NAME = "training_state.pt"
MODEL_WEIGHTS_NAME = "model.safetensors"
TRAINER_STATE_NAME = "trainer_state.json"


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete `checkpoint-STEP` folders (weights and training state) in `output_dir`, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for path in output_dir.iterdir():
        match = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d+)", path.name)
        if match and (path / TRAINING_STATE_NAME).is_file() and (path / MODEL_WEIGHTS_NAME).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def resolve_checkpoint(resume_from_checkpoint: str | None, output_dir: str | os.PathLike) -> Path | None:
    """The checkpoint folder to resume from: `latest` -> the newest in `output_dir` (`None` if none)."""
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            logger.warning(
                f"`resume_from_checkpoint` is 'latest' but {str(output_dir)!r} has no checkpoint: starting anew."
            )
            return None
        return checkpoints[-1]
    path = Path(resume_from_checkpoint)
    for name in (TRAINING_STATE_NAME, MODEL_WEIGHTS_NAME):
        if not (path / name).is_file():
            raise FileNotFoundError(
                f"`resume_from_checkpoint` {str(path)!r} is not a complete checkpoint folder: {name} is missing. "
                f"Give a `{CHECKPOINT_PREFIX}STEP` folder written by this trainer, or 'latest'."
            )
    return path


def resolve_trainer_checkpoint(resume_from_checkpoint: str | None, output_dir: str | os.PathLike) -> str | None:
    """For a transformers `Trainer`: `latest` (or `true`) -> the newest `checkpoint-STEP` folder of
    `output_dir`, `None` when there is none yet (so that a preemptible job reruns one command); a path as given."""
    if resume_from_checkpoint not in ("latest", "true", "True"):
        return resume_from_checkpoint
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if os.path.isdir(output_dir) else None


def rng_state() -> dict:
    """The random states a resumed run must restore to draw the same numbers."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def format_log_entry(entry: dict) -> str:
    """`key=value` pairs of a log entry, floats to 5 significant digits."""
    return " ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items())


def write_checkpoint(
    output_dir: Path, step: int, model, training_state: dict, trainer_state: dict, save_total_limit: int | None
) -> Path:
    """Writes `output_dir/checkpoint-STEP/` atomically (built in a hidden sibling folder, then renamed) and
    keeps the newest `save_total_limit` checkpoints.

    The folder holds the model (`save_pretrained`), `training_state.pt` (optimizer, scheduler, random state,
    position; loadable with `torch.load(weights_only=True)`) and `trainer_state.json` (the log history).
    """
    final = output_dir / f"{CHECKPOINT_PREFIX}{step}"
    staging = output_dir / f".{final.name}.tmp-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    torch.save(training_state, staging / TRAINING_STATE_NAME)
    write_json_atomically(staging / TRAINER_STATE_NAME, trainer_state)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    if save_total_limit is not None:
        for stale in list_checkpoints(output_dir)[:-save_total_limit]:
            shutil.rmtree(stale)
    return final


class StepBatchSampler:
    """
    Indices of the batch of any training step, from `(seed, step)` alone.

    Every epoch is a fresh permutation of the dataset drawn from `numpy.random.default_rng([seed, epoch])`,
    cut into `len(dataset) // batch_size` full batches (the remainder of an epoch is left out, a
    different one each epoch). A resumed run therefore sees exactly the samples the uninterrupted run would
    have seen.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int):
        if num_samples < batch_size:
            raise ValueError(
                f"The training set has {num_samples} poses, fewer than one batch (`batch_size`="
                f"{batch_size}); lower `batch_size` or add data."
            )
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.steps_per_epoch = num_samples // batch_size
        self._epoch, self._permutation = None, None

    def __call__(self, step: int) -> np.ndarray:
        """`(batch_size,)` int64 dataset indices of training step `step` (counted from 0)."""
        epoch, position = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._permutation = np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)
        return self._permutation[position * self.batch_size : (position + 1) * self.batch_size]


def enable_progress_logging() -> None:
    """Shows this package's INFO messages (losses, validation metrics) on stderr; for command-line runs."""
    import logging as std_logging

    package_logger = std_logging.getLogger(__name__.split(".")[0])
    package_logger.setLevel(std_logging.INFO)
    if not any(getattr(handler, "_unipose_progress", False) for handler in package_logger.handlers):
        handler = std_logging.StreamHandler()
        handler.setFormatter(std_logging.Formatter("[%(name)s] %(message)s"))
        handler._unipose_progress = True
        package_logger.addHandler(handler)


__all__ = [
    "CHECKPOINT_PREFIX",
    "MODEL_WEIGHTS_NAME",
    "TRAINER_STATE_NAME",
    "TRAINING_STATE_NAME",
    "StepBatchSampler",
    "enable_progress_logging",
    "format_log_entry",
    "list_checkpoints",
    "resolve_checkpoint",
    "resolve_trainer_checkpoint",
    "restore_rng_state",
    "rng_state",
    "write_checkpoint",
    "write_json_atomically",
]
