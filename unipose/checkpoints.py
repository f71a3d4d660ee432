"""Checkpoint folders of the project's own training loops (stage 0, retrieval models).

A checkpoint is a `checkpoint-STEP` folder, written under a temporary name and renamed when complete, holding
the model's `save_pretrained` files and `training_state.pt` (optimizer, scheduler, RNG states, step), which
loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from transformers.utils import logging


logger = logging.get_logger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
TRAINING_STATE_NAME = "training_state.pt"
MODEL_WEIGHTS_NAME = "model.safetensors"


def write_json_atomically(path: Path, payload: Any) -> None:
    """`payload` as indented JSON at `path`, written to a temporary file first and then renamed."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


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


__all__ = ["CHECKPOINT_PREFIX", "MODEL_WEIGHTS_NAME", "TRAINING_STATE_NAME", "list_checkpoints", "resolve_checkpoint", "write_json_atomically"]
