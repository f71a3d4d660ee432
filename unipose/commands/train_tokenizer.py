"""`unipose train-tokenizer`: stage 0, the same run as `train/train_pose_tokenizer.py`, with the same
options."""

from __future__ import annotations

import json

from ..checkpoints import enable_progress_logging
from ..training.pose_tokenizer import parse_arguments as parse_training_arguments
from ..training.pose_tokenizer import train_pose_tokenizer


def parse_arguments(argv: list[str]) -> tuple:
    """The recipe and options of `unipose.training.pose_tokenizer`, read by its own parser (`--config`, every
    field an option); the command line hands them over whole."""
    return parse_training_arguments(argv, prog="unipose train-tokenizer")


def run(args: tuple) -> str:
    enable_progress_logging()
    return json.dumps(train_pose_tokenizer(*args), indent=2, sort_keys=True)
