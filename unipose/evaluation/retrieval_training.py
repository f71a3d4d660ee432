# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
Training the retrieval models of the evaluation: pretraining on automatic captions, then fine-tuning on human
ones, as PoseScript and PoseFix train theirs.

A run has up to two phases, `pretrain` (on `pretrain_data`) and `finetune` (on `finetune_data`); each gets a
fresh AdamW optimizer and learning-rate schedule and ends with a Recall@K evaluation on `eval_split` and a
saved model in `output_dir/<phase>/`. The model of the last phase is also saved in `output_dir` itself,
with the text tokenizer beside it, ready for `unipose evaluate --retrieval-model output_dir`.

Training resumes exactly: the batch of a step (which records, and which of their captions) is a function of
`(seed, phase, step)` alone, and `output_dir/checkpoint-STEP/` keeps the model, the optimizer, the schedule,
the random state and the position in the run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from transformers import get_scheduler
from transformers.utils import logging

from ..arguments import ScriptArgumentParser
from ..checkpoints import (
    TRAINER_STATE_NAME,
    TRAINING_STATE_NAME,
    StepBatchSampler,
    format_log_entry,
    list_checkpoints,
    resolve_checkpoint,
    restore_rng_state,
    rng_state,
    write_checkpoint,
    write_json_atomically,
)
from ..data.corpus import load_split
from ..rotations import to_rotation_6d
from .metrics import RETRIEVAL_MODEL_RECALL_K, text_pose_recalls
from .retrieval import (
    PosePairTextRetrievalConfig,
    PosePairTextRetrievalModel,
    PoseTextRetrievalConfig,
    PoseTextRetrievalModel,
    embed_pose_pairs,
    embed_poses,
    embed_texts,
    pretrained_word_embeddings,
    tokenize_texts,
)

logger = logging.get_logger(__name__)

TRAINING_ARGS_NAME = "training_args.json"
PHASES = ("pretrain", "finetune")
# `word_embeddings` value that builds a small in-memory tokenizer with random embeddings (offline smoke runs).
TINY_WORD_EMBEDDINGS = "tiny"
TINY_WORD_EMBEDDING_DIM = 32
# The model kind each record kind trains.
RECORD_KINDS = {"pose_text": "pose_text", "pose_pair": "pose_pair"}


@dataclass
class RetrievalTrainingArguments:
    """
    Settings of a retrieval-model training run. Every field is a command-line option (`--field value`) and
    a key of the YAML file given with `--config`.
    """

    output_dir: str = field(metadata={"help": "Where checkpoints and the trained model go."})
    model_kind: Literal["pose_text", "pose_pair"] = field(
        default="pose_text",
        metadata={
            "help": "pose_text: a pose and its description; pose_pair: poses A, B and the instruction A -> B."
        },
    )
    pretrain_data: list[str] = field(
        default_factory=list,
        metadata={"help": "Datasets with automatic captions (saved datasets or folders of them)."},
    )
    finetune_data: list[str] = field(
        default_factory=list,
        metadata={"help": "Datasets with human captions, trained on after `pretrain_data`."},
    )
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(
        default="validation", metadata={"help": "Split for Recall@K after each phase (none: skip)."}
    )
    word_embeddings: str = field(
        default="distilbert-base-uncased",
        metadata={
            "help": "Hub id or folder of a model whose tokenizer and input embeddings feed the text encoder; "
            "'tiny' for an offline smoke run."
        },
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Start from a saved retrieval model."}
    )
    embed_dim: int = field(default=512, metadata={"help": "Dimension of the joint embedding space."})
    text_hidden_size: int = field(default=512, metadata={"help": "GRU width per direction."})
    pose_hidden_size: int = field(
        default=512, metadata={"help": "Channels of the pose encoder's convolutions."}
    )
    max_text_length: int = field(default=256, metadata={"help": "Texts are cut to this many tokens."})
    batch_size: int = field(
        default=256, metadata={"help": "Batch size (the loss classifies within the batch)."}
    )
    pretrain_epochs: float = field(default=100.0, metadata={"help": "Epochs over `pretrain_data`."})
    finetune_epochs: float = field(default=50.0, metadata={"help": "Epochs over `finetune_data`."})
    max_steps: int = field(default=-1, metadata={"help": "If > 0: steps per phase, overriding the epochs."})
    learning_rate: float = field(
        default=2e-4, metadata={"help": "Peak learning rate of the pretraining phase."}
    )
    finetune_learning_rate: float = field(
        default=2e-5, metadata={"help": "Peak learning rate of the fine-tuning phase."}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "A transformers scheduler name."})
    warmup_ratio: float = field(default=0.0, metadata={"help": "Share of each phase spent warming up."})
    eval_batch_size: int = field(default=256, metadata={"help": "Batch size of the Recall@K evaluation."})
    logging_steps: int = field(default=50, metadata={"help": "Log the mean loss every this many steps."})
    save_steps: int = field(default=500, metadata={"help": "Write a checkpoint every this many steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept (oldest removed)."})
    seed: int = field(default=0, metadata={"help": "Seed of the initialisation, batches and caption choice."})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:1 ..."})
    disable_tqdm: bool = field(default=False, metadata={"help": "Hide the progress bar."})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "'latest' or a checkpoint folder to resume from."}
    )

    def __post_init__(self):
        if not self.pretrain_data and not self.finetune_data:
            raise ValueError("Give `pretrain_data`, `finetune_data` or both: there is nothing to train on.")
        for name in (
            "embed_dim",
            "text_hidden_size",
            "pose_hidden_size",
            "max_text_length",
            "eval_batch_size",
            "logging_steps",
            "save_steps",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")
        if self.batch_size < 2:
            raise ValueError(
                f"`batch_size` must be at least 2 (the loss contrasts items of a batch), got {self.batch_size}."
            )
        for name in ("pretrain_epochs", "finetune_epochs", "learning_rate", "finetune_learning_rate"):
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be positive, got {getattr(self, name)}.")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"`warmup_ratio` must lie in [0, 1), got {self.warmup_ratio}.")


@dataclass
class TrainingPhase:
    """One phase of a run: its records, steps and peak learning rate."""

    name: str
    train_dataset: Any
    eval_dataset: Any
    num_steps: int
    learning_rate: float


# ----------------------------------------------------------------------------------------------------
# Batches
# ----------------------------------------------------------------------------------------------------


def _pose_columns(model_kind: str) -> tuple[str, ...]:
    return ("pose",) if model_kind == "pose_text" else ("pose_a", "pose_b")


def _caption_choice(texts: list[list[str]], seed: int, phase: int, step: int) -> list[str]:
    """One caption per record, drawn from `(seed, phase, step)` alone."""
    rng = np.random.default_rng([seed, phase, step])
    return [captions[int(rng.integers(len(captions)))] for captions in texts]


def _with_captions(dataset, name: str):
    """`dataset` without records that have no caption (they cannot be trained or evaluated on)."""
    keep = [index for index, texts in enumerate(dataset["texts"]) if len(texts) > 0]
    if len(keep) < len(dataset):
        logger.warning(
            f"{name}: {len(dataset) - len(keep)} of {len(dataset)} records have no caption and are left out."
        )
        dataset = dataset.select(keep)
    return dataset


# ----------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------
# Trainer
# ----------------------------------------------------------------------------------------------------


class RetrievalTrainer:
    """
    The training loop of a retrieval model over one or two phases, with atomic, exactly resumable checkpoints.

    Args:
        model ([`PoseTextRetrievalModel`] or [`PosePairTextRetrievalModel`]): the model to train.
        tokenizer: the text tokenizer of the model.
        args ([`RetrievalTrainingArguments`]): the run's settings.
        phases (`list[TrainingPhase]`): the phases to run, in order.

    Example:

    ```python
    >>> trainer = RetrievalTrainer(model, tokenizer, args, build_phases(args))  # doctest: +SKIP
    >>> results = trainer.train()  # doctest: +SKIP
    ```
    """

    def __init__(self, model, tokenizer, args: RetrievalTrainingArguments, phases: list[TrainingPhase]):
        if not phases:
            raise ValueError("`phases` is empty: give at least one phase to train.")
        self.args = args
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
        )
        self.model = model.to(self.device)
        self.tokenizer = tokenizer
        self.phases = phases
        self.pose_columns = _pose_columns(args.model_kind)
        self.output_dir = Path(args.output_dir)
        self.phase_index, self.step_in_phase, self.global_step = 0, 0, 0
        self.log_history: list[dict[str, float]] = []
        self.phase_results: dict[str, dict[str, float]] = {}
        self._start_phase()
        # What fixes the sample order and the step counts; a resumed run must agree on it to be exact.
        self._run_signature = {
            "seed": args.seed,
            "batch_size": args.batch_size,
            "phases": [[phase.name, len(phase.train_dataset), phase.num_steps] for phase in phases],
        }

    @property
    def phase(self) -> TrainingPhase:
        return self.phases[self.phase_index]

    def _start_phase(self) -> None:
        """A fresh optimizer, schedule and batch order for the current phase."""
        phase = self.phase
        self.sampler = StepBatchSampler(
            len(phase.train_dataset), self.args.batch_size, self.args.seed * len(PHASES) + self.phase_index
        )
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=phase.learning_rate,
            weight_decay=self.args.weight_decay,
        )
        self.scheduler = get_scheduler(
            self.args.lr_scheduler_type,
            self.optimizer,
            num_warmup_steps=math.ceil(self.args.warmup_ratio * phase.num_steps),
            num_training_steps=phase.num_steps,
        )
        self.train_records = phase.train_dataset.with_format("numpy", columns=list(self.pose_columns))

    # -- one step --------------------------------------------------------------------------------------

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """The model inputs of step `step` of the current phase (depend on `(seed, phase, step)` only)."""
        indices = np.sort(self.sampler(step))
        poses = self.train_records[indices]
        texts = _caption_choice(
            self.phase.train_dataset[indices]["texts"], self.args.seed, self.phase_index, step
        )
        inputs = tokenize_texts(self.tokenizer, texts, self.model.config.max_text_length, self.device)
        names = ("poses_6d",) if len(self.pose_columns) == 1 else ("poses_a_6d", "poses_b_6d")
        for name, column in zip(names, self.pose_columns):
            inputs[name] = to_rotation_6d(np.asarray(poses[column]), name=column).float().to(self.device)
        return inputs

    def training_step(self, step: int) -> dict[str, float]:
        self.model.train()
        output = self.model(**self.batch(step))
        self.optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": float(output.loss.detach()), "temperature": float(self.model.temperature.detach())}

    # -- the loop ----------------------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """
        Runs (or resumes) every phase, then saves the final model and tokenizer into `output_dir`.

        Returns:
            `dict`: per phase, its Recall@K on `eval_split` (`"R^T2P@1"`, ..., `"mRecall"`), and `global_step`.
        """
        args = self.args
        self.output_dir.mkdir(parents=True, exist_ok=True)
        checkpoint = resolve_checkpoint(args.resume_from_checkpoint, args.output_dir)
        if checkpoint is not None:
            self.load_checkpoint(checkpoint)
            logger.info(
                f"Resumed from {str(checkpoint)!r}: phase {self.phase.name}, step {self.step_in_phase}."
            )
        start_time = time.monotonic()
        while self.phase_index < len(self.phases):
            phase = self.phase
            logger.info(
                f"Phase {phase.name}: {phase.num_steps} steps of {args.batch_size} on {len(phase.train_dataset)} "
                f"records, lr {phase.learning_rate}, on {self.device}."
            )
            progress = _progress_bar(phase.num_steps, self.step_in_phase, phase.name, args.disable_tqdm)
            window = []
            while self.step_in_phase < phase.num_steps:
                window.append(self.training_step(self.step_in_phase))
                self.step_in_phase += 1
                self.global_step += 1
                progress.update(1)
                if self.step_in_phase % args.logging_steps == 0 or self.step_in_phase == phase.num_steps:
                    entry = {name: float(np.mean([m[name] for m in window])) for name in window[0]}
                    entry.update(
                        phase=phase.name, step=self.global_step, learning_rate=self.scheduler.get_last_lr()[0]
                    )
                    self._log(entry)
                    progress.set_postfix(loss=f"{entry['loss']:.4f}")
                    window = []
                if self.step_in_phase % args.save_steps == 0 or self.step_in_phase == phase.num_steps:
                    self.save_checkpoint()
            progress.close()
            self._finish_phase()
        self.save_model(self.output_dir)
        return {
            **self.phase_results,
            "global_step": self.global_step,
            "train_runtime": time.monotonic() - start_time,
        }

    def _finish_phase(self) -> None:
        """Evaluates and saves the model of the phase just trained, then moves to the next phase."""
        phase = self.phase
        if phase.name not in self.phase_results:
            if phase.eval_dataset is not None:
                self.phase_results[phase.name] = self.evaluate(phase.eval_dataset)
                self._log(
                    {
                        **{f"eval_{k}": v for k, v in self.phase_results[phase.name].items()},
                        "phase": phase.name,
                    }
                )
            else:
                self.phase_results[phase.name] = {}
            self.save_model(self.output_dir / phase.name)
        self.phase_index += 1
        self.step_in_phase = 0
        if self.phase_index < len(self.phases):
            self._start_phase()
            # The phase boundary is a resumable point too: a restart goes straight to the next phase.
            self.save_checkpoint()

    @torch.no_grad()
    def evaluate(self, dataset) -> dict[str, float]:
        """Recall@1/5/10 in both directions and mRecall on `dataset` (first caption of each record)."""
        self.model.eval()
        texts = [captions[0] for captions in dataset["texts"]]
        text_embeds = embed_texts(self.model, self.tokenizer, texts, self.args.eval_batch_size)
        poses = [np.asarray(dataset.with_format("numpy")[column]) for column in self.pose_columns]
        if len(poses) == 1:
            pose_embeds = embed_poses(self.model, poses[0], self.args.eval_batch_size)
        else:
            pose_embeds = embed_pose_pairs(self.model, poses[0], poses[1], self.args.eval_batch_size)
        k_values = tuple(k for k in RETRIEVAL_MODEL_RECALL_K if k <= len(texts))
        return text_pose_recalls(text_embeds, pose_embeds, k_values)

    def _log(self, entry: dict[str, Any]) -> None:
        self.log_history.append(entry)
        logger.info(format_log_entry(entry))

    # -- saving ------------------------------------------------------------------------------------------

    def _training_state(self) -> dict[str, Any]:
        return {
            "phase_index": self.phase_index,
            "step_in_phase": self.step_in_phase,
            "global_step": self.global_step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "run_signature": json.dumps(self._run_signature, sort_keys=True),
        }

    def save_checkpoint(self) -> Path:
        """Writes `output_dir/checkpoint-STEP/` atomically and keeps the newest `save_total_limit`."""
        return write_checkpoint(
            self.output_dir,
            self.global_step,
            self.model,
            self._training_state(),
            {"global_step": self.global_step, "log_history": self.log_history, "phase_results": self.phase_results},
            self.args.save_total_limit,
        )

    def load_checkpoint(self, checkpoint: str | os.PathLike) -> None:
        """Restores the model, optimizer, schedule, random state and position of a checkpoint."""
        from safetensors.torch import load_file

        checkpoint = Path(checkpoint)
        state = torch.load(checkpoint / TRAINING_STATE_NAME, weights_only=True, map_location="cpu")
        if state["run_signature"] != json.dumps(self._run_signature, sort_keys=True):
            raise ValueError(
                f"Cannot resume exactly from {str(checkpoint)!r}: it was written by a run with "
                f"{state['run_signature']}, this run has {json.dumps(self._run_signature, sort_keys=True)}. Use the "
                "settings and data of that run, or start a new run in another `output_dir`."
            )
        self.model.load_state_dict(
            load_file(checkpoint / "model.safetensors", device=str(self.device)), strict=True
        )
        self.phase_index = int(state["phase_index"])
        self.step_in_phase = int(state["step_in_phase"])
        self.global_step = int(state["global_step"])
        self._start_phase()
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        trainer_state = json.loads((checkpoint / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
        self.log_history = trainer_state["log_history"]
        self.phase_results = trainer_state["phase_results"]

    def save_model(self, directory: str | os.PathLike) -> None:
        """Saves the model (safetensors), the text tokenizer and the run's arguments into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        staging = directory / f".final.tmp-{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        self.model.save_pretrained(staging)
        self.tokenizer.save_pretrained(staging)
        write_json_atomically(staging / TRAINING_ARGS_NAME, dataclasses.asdict(self.args))
        write_json_atomically(
            staging / TRAINER_STATE_NAME,
            {
                "global_step": self.global_step,
                "log_history": self.log_history,
                "phase_results": self.phase_results,
            },
        )
        for path in staging.iterdir():
            os.replace(path, directory / path.name)
        staging.rmdir()


def _progress_bar(total: int, initial: int, description: str, disable: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, disable=disable, desc=description, unit="step", dynamic_ncols=True
    )


# ----------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------


def build_tokenizer_and_embeddings(word_embeddings: str) -> tuple:
    """The text tokenizer and its word-embedding table `(vocab, dim)` for `word_embeddings` (see the field)."""
    if word_embeddings == TINY_WORD_EMBEDDINGS:
        from ..tokenization import build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer()
        generator = torch.Generator().manual_seed(0)
        return tokenizer, torch.randn(len(tokenizer), TINY_WORD_EMBEDDING_DIM, generator=generator)
    return pretrained_word_embeddings(word_embeddings)


def build_retrieval_model(
    args: RetrievalTrainingArguments, tokenizer=None, word_embeddings: torch.Tensor | None = None
):
    """
    A new retrieval model for `args` (or the saved one of `args.model_name_or_path`) and its tokenizer.

    Args:
        args ([`RetrievalTrainingArguments`]): the run's settings.
        tokenizer (*optional*), word_embeddings (`torch.Tensor` of shape `(vocab, dim)`, *optional*):
            Give both to skip loading `args.word_embeddings` (e.g. offline).

    Returns:
        `tuple`: the model and the text tokenizer.
    """
    from .retrieval import load_retrieval_model

    torch.manual_seed(args.seed)
    if args.model_name_or_path is not None:
        model, saved_tokenizer = load_retrieval_model(args.model_name_or_path)
        expected = (
            "unipose_pose_text_retrieval"
            if args.model_kind == "pose_text"
            else "unipose_pose_pair_text_retrieval"
        )
        if model.config.model_type != expected:
            raise ValueError(
                f"`model_name_or_path` holds a {model.config.model_type!r} model but `model_kind` is "
                f"{args.model_kind!r}."
            )
        return model, tokenizer or saved_tokenizer
    if tokenizer is None or word_embeddings is None:
        tokenizer, word_embeddings = build_tokenizer_and_embeddings(args.word_embeddings)
    config_class = PoseTextRetrievalConfig if args.model_kind == "pose_text" else PosePairTextRetrievalConfig
    model_class = PoseTextRetrievalModel if args.model_kind == "pose_text" else PosePairTextRetrievalModel
    config = config_class(
        vocab_size=word_embeddings.shape[0],
        word_embedding_dim=word_embeddings.shape[1],
        pad_token_id=tokenizer.pad_token_id,
        embed_dim=args.embed_dim,
        text_hidden_size=args.text_hidden_size,
        max_text_length=args.max_text_length,
        pose_encoder_config={"hidden_size": args.pose_hidden_size, "code_dim": args.pose_hidden_size},
    )
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the word embeddings only {config.vocab_size} rows."
        )
    model = model_class(config)
    model.set_word_embeddings(word_embeddings)
    return model, tokenizer


def build_phases(args: RetrievalTrainingArguments) -> list[TrainingPhase]:
    """The phases of `args`: `pretrain` on `pretrain_data` and/or `finetune` on `finetune_data`."""
    phases = []
    for name, paths, epochs, learning_rate in (
        ("pretrain", args.pretrain_data, args.pretrain_epochs, args.learning_rate),
        ("finetune", args.finetune_data, args.finetune_epochs, args.finetune_learning_rate),
    ):
        if not paths:
            continue
        train = _with_captions(
            load_split(paths, args.model_kind, args.train_split), f"{name}/{args.train_split}"
        )
        evaluation = None
        if args.eval_split is not None:
            evaluation = _with_captions(
                load_split(paths, args.model_kind, args.eval_split), f"{name}/{args.eval_split}"
            )
        if len(train) < args.batch_size:
            raise ValueError(
                f"The {name} data has {len(train)} captioned records, fewer than one batch (`batch_size`="
                f"{args.batch_size}); lower `batch_size` or add data."
            )
        steps = args.max_steps if args.max_steps > 0 else math.ceil(epochs * (len(train) // args.batch_size))
        phases.append(TrainingPhase(name, train, evaluation, steps, learning_rate))
    return phases


def train_retrieval(args: RetrievalTrainingArguments, tokenizer=None, word_embeddings=None) -> dict[str, Any]:
    """Builds the model and the phases of `args` and trains (see [`RetrievalTrainer.train`])."""
    phases = build_phases(args)
    model, tokenizer = build_retrieval_model(args, tokenizer, word_embeddings)
    return RetrievalTrainer(model, tokenizer, args, phases).train()


def parse_arguments(argv: list[str] | None = None) -> RetrievalTrainingArguments:
    """Arguments from `--config FILE` (YAML) and the command line (which wins)."""
    parser = ScriptArgumentParser(RetrievalTrainingArguments, description="Train a text-pose retrieval model.")
    (args,) = parser.parse(argv)
    return args


__all__ = [
    "RetrievalTrainer",
    "RetrievalTrainingArguments",
    "TrainingPhase",
    "build_phases",
    "build_retrieval_model",
    "list_checkpoints",
    "parse_arguments",
    "train_retrieval",
]
