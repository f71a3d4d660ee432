# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
Training of the retrieval models that the evaluation scores with (`unipose.retrieval_models`): pretraining on
automatic captions, then fine-tuning on human ones, as PoseScript, PoseFix and the UniPose authors train theirs,
with the transformers `Trainer` (their recipes and where this one differs: [`RETRIEVAL_TRAINING_DEFAULTS`]).

- [`RetrievalArguments`]: the data, the model and the fine-tuning phase's schedule. The optimisation, the
  pretraining phase's schedule, checkpoints, logging and progress are transformers' `TrainingArguments`.
- [`RetrievalCollator`]: tokenizes one caption per record, drawn reproducibly (see the class), and turns the
  poses into the 6D rotations the pose encoder reads.
- [`RetrievalTrainer`]: the `Trainer`, whose `evaluate` scores Recall@K on the whole evaluation split (both
  directions and mRecall, as `unipose evaluate` does) and whose logs carry the learned temperature.
- [`train_retrieval`]: up to two phases, `pretrain` on `pretrain_data` and `finetune` on `finetune_data`.
  Each is a `Trainer` run with a fresh optimizer and schedule in `output_dir/<phase>/` (its checkpoints, then
  its model, text tokenizer and `eval_results.json`); the model of the last phase is also saved in
  `output_dir` itself, ready for `unipose evaluate --retrieval-model output_dir`.

With `resume_from_checkpoint` (`latest`, or a `checkpoint-STEP` folder of a phase), a killed run goes on where
it stopped and ends with the weights of an uninterrupted run: finished phases are read back from their
folders, the unfinished one resumes from its checkpoint (model, optimizer, schedule, random state, and the
position in the seeded batch order), and the captions of a batch do not depend on the random state.

```bash
python train/train_retrieval.py --output_dir runs/retrieval_smoke --pretrain_data synthetic \
    --word_embeddings tiny --per_device_train_batch_size 32 --max_steps 200 --use_cpu
```
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import TrainingArguments
from transformers.utils import SAFE_WEIGHTS_NAME, logging

from ..checkpoints import RunSignature, check_resumable, check_same_run, resolve_trainer_checkpoint
from ..checks import check_positive_int
from ..data.corpus import load_split
from ..files import staged_files, write_json_atomically
from ..metrics import RETRIEVAL_MODEL_RECALL_K, text_pose_recalls
from ..retrieval_models import (
    PosePairTextRetrievalConfig,
    PosePairTextRetrievalModel,
    PoseTextRetrievalConfig,
    PoseTextRetrievalModel,
    embed_pose_pairs,
    embed_poses,
    embed_texts,
    load_retrieval_model,
    pretrained_word_embeddings,
    tokenize_texts,
)
from ..rotations import to_rotation_6d
from ..tokenization import build_tiny_tokenizer
from .scoring import WholeSetScoringTrainer

logger = logging.get_logger(__name__)

RESULTS_NAME = "eval_results.json"
ARGUMENTS_NAME = "training_args.json"
# `word_embeddings` value that builds a small in-memory tokenizer with random embeddings (offline smoke runs).
TINY_WORD_EMBEDDINGS = "tiny"
TINY_WORD_EMBEDDING_DIM = 32
# The model inputs of each record kind, and the columns they are read from.
POSE_INPUTS = {
    "pose_text": {"poses_6d": "pose"},
    "pose_pair": {"poses_a_6d": "pose_a", "poses_b_6d": "pose_b"},
}
MODEL_CLASSES = {
    "pose_text": (PoseTextRetrievalConfig, PoseTextRetrievalModel),
    "pose_pair": (PosePairTextRetrievalConfig, PosePairTextRetrievalModel),
}
# `TrainingArguments` defaults of `train/train_retrieval.py`, where they differ from transformers': what PoseScript's
# and the UniPose authors' retrieval training agree on (learning rate 2e-4 in both phases, no gradient clipping),
# and this project's batch, length and schedule, on which they differ (PoseScript: batch 512 then 32, 1000 then
# 200 epochs, the rate halved every 400 then 40 epochs, and a left/right flip of pose and text when fine-tuning;
# the UniPose authors: batch 32, 120 epochs, the rate divided by 10 at epochs 80 and 110, the best checkpoint by
# mRecall kept; this project keeps the last weights).
RETRIEVAL_TRAINING_DEFAULTS = {
    "learning_rate": 2e-4,
    "max_grad_norm": 0.0,
    "num_train_epochs": 100.0,
    "per_device_train_batch_size": 256,
    "per_device_eval_batch_size": 256,
    "lr_scheduler_type": "cosine",
    "logging_steps": 50,
    "save_steps": 500,
    "save_total_limit": 2,
    "seed": 0,
}


@dataclass
class RetrievalArguments:
    """
    The data and the model of a retrieval-model run, and the schedule of its fine-tuning phase. The
    pretraining phase takes `learning_rate` and `num_train_epochs` from `TrainingArguments`, whose
    `max_steps`, when positive, sets the steps of each phase; `per_device_train_batch_size` is the batch the
    loss classifies within, and `per_device_eval_batch_size` the batch of the Recall@K embeddings.
    `train/train_retrieval.py` defaults some `TrainingArguments` ([`RETRIEVAL_TRAINING_DEFAULTS`]: learning rate
    2e-4 and no gradient clipping, as PoseScript and the UniPose authors train; 100 epochs, batch 256, cosine
    schedule and seed 0, this project's choices).

    Args:
        model_kind (`str`, *optional*, defaults to `"pose_text"`):
            `"pose_text"`: a pose and its description (`pose_text` records); `"pose_pair"`: poses A and B and
            the instruction A -> B (`pose_pair` records).
        pretrain_data (`list[str]`, *optional*):
            Corpora with automatic captions (saved datasets or folders of them), trained on first.
        finetune_data (`list[str]`, *optional*):
            Corpora with human captions, trained on after `pretrain_data`. At least one of the two is needed.
        train_split (`str`, *optional*, defaults to `"train"`):
            The split trained on.
        eval_split (`str`, *optional*, defaults to `"validation"`):
            The split scored (Recall@K) at the end of each phase; `none` skips the scoring.
        word_embeddings (`str`, *optional*, defaults to `"distilbert-base-uncased"`):
            Hub id or folder of a model whose tokenizer and input embeddings (frozen) feed the text encoder;
            `"tiny"` for a small in-memory tokenizer with random embeddings (offline smoke runs).
        model_name_or_path (`str`, *optional*):
            A saved retrieval model of kind `model_kind` (with its tokenizer) to start from; the sizes below
            and `word_embeddings` are then those of the saved model.
        embed_dim (`int`, *optional*, defaults to 512):
            Dimension of the joint embedding space.
        text_hidden_size (`int`, *optional*, defaults to 512):
            Width of each direction of the text encoder's GRU.
        pose_hidden_size (`int`, *optional*, defaults to 512):
            Channels of the pose encoder's convolutions.
        max_text_length (`int`, *optional*, defaults to 256):
            Texts are cut to this many tokens.
        finetune_learning_rate (`float`, *optional*, defaults to 2e-4):
            Peak learning rate of the fine-tuning phase (PoseScript's and the UniPose authors').
        finetune_epochs (`float`, *optional*, defaults to 50.0):
            Epochs over `finetune_data` (unless `max_steps` is set).
    """

    model_kind: Literal["pose_text", "pose_pair"] = field(
        default="pose_text",
        metadata={
            "help": "pose_text: a pose and its description; pose_pair: poses A, B and the instruction A -> B."
        },
    )
    pretrain_data: list[str] = field(
        default_factory=list, metadata={"help": "Corpora with automatic captions, trained on first."}
    )
    finetune_data: list[str] = field(
        default_factory=list,
        metadata={"help": "Corpora with human captions, trained on after pretrain_data."},
    )
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(
        default="validation", metadata={"help": "Split scored (Recall@K) after each phase; 'none' to skip."}
    )
    word_embeddings: str = field(
        default="distilbert-base-uncased",
        metadata={
            "help": "Hub id or folder of a model whose tokenizer and input embeddings feed the text encoder; "
            "'tiny' for an offline smoke run."
        },
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved retrieval model to start from."}
    )
    embed_dim: int = field(default=512, metadata={"help": "Dimension of the joint embedding space."})
    text_hidden_size: int = field(default=512, metadata={"help": "GRU width per direction."})
    pose_hidden_size: int = field(
        default=512, metadata={"help": "Channels of the pose encoder's convolutions."}
    )
    max_text_length: int = field(default=256, metadata={"help": "Texts are cut to this many tokens."})
    finetune_learning_rate: float = field(
        default=2e-4, metadata={"help": "Peak learning rate of fine-tuning."}
    )
    finetune_epochs: float = field(
        default=50.0, metadata={"help": "Epochs over finetune_data (unless max_steps)."}
    )

    def __post_init__(self):
        for name in ("pretrain_data", "finetune_data"):
            if isinstance(getattr(self, name), str):
                setattr(self, name, [getattr(self, name)])
        if not self.pretrain_data and not self.finetune_data:
            raise ValueError("Give `pretrain_data`, `finetune_data` or both: there is nothing to train on.")
        if self.model_kind not in MODEL_CLASSES:
            raise ValueError(f"`model_kind` must be one of {sorted(MODEL_CLASSES)}, got {self.model_kind!r}.")
        if self.eval_split is not None and self.eval_split.lower() in ("", "none"):
            self.eval_split = None
        for name in ("embed_dim", "text_hidden_size", "pose_hidden_size", "max_text_length"):
            check_positive_int(getattr(self, name), name)
        for name in ("finetune_learning_rate", "finetune_epochs"):
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be positive, got {getattr(self, name)}.")


@dataclass
class RetrievalPhase:
    """One phase of a run: its name, records (training; evaluation or `None`), learning rate and epochs."""

    name: str
    train_dataset: Any
    eval_dataset: Any
    learning_rate: float
    epochs: float


class RetrievalCollator:
    """
    Batches `pose_text` or `pose_pair` records as the inputs of a retrieval model: the right-padded token ids
    of one caption per record and the poses in 6D (`poses_6d`, or `poses_a_6d` and `poses_b_6d`).

    The caption of each record is drawn with a generator seeded by `seed` and the ids of the batch's records,
    in order: a batch always gets the same captions, whichever run (or resumed run) collates it and whatever
    the random state, and a record met again in another batch (another epoch) gets a fresh draw.

    Args:
        tokenizer: the text tokenizer of the model.
        model_kind (`str`): `"pose_text"` or `"pose_pair"`.
        max_text_length (`int`): texts are cut to this many tokens.
        seed (`int`, *optional*, defaults to 0): seed of the caption draws.
    """

    def __init__(self, tokenizer, model_kind: str, max_text_length: int, seed: int = 0):
        if model_kind not in POSE_INPUTS:
            raise ValueError(f"`model_kind` must be one of {sorted(POSE_INPUTS)}, got {model_kind!r}.")
        self.tokenizer = tokenizer
        self.model_kind = model_kind
        self.max_text_length = max_text_length
        self.seed = seed

    def __call__(self, records: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = "\n".join(str(record["id"]) for record in records).encode("utf-8")
        batch_key = int.from_bytes(hashlib.blake2b(ids, digest_size=8).digest(), "little")
        rng = np.random.default_rng([self.seed, batch_key])
        texts = [record["texts"][int(rng.integers(len(record["texts"])))] for record in records]
        inputs = tokenize_texts(self.tokenizer, texts, self.max_text_length)
        for name, column in POSE_INPUTS[self.model_kind].items():
            poses = np.stack([np.asarray(record[column], dtype=np.float32) for record in records])
            inputs[name] = to_rotation_6d(poses, name=column).float()
        return inputs


@torch.no_grad()
def retrieval_recalls(model, tokenizer, dataset, batch_size: int = 256) -> dict[str, float]:
    """Recall@1/5/10 (the K up to the number of records) in both directions and mRecall of `model` on the
    records of `dataset`, each with its first caption."""
    texts = [captions[0] for captions in dataset["texts"]]
    text_embeds = embed_texts(model, tokenizer, texts, batch_size)
    kind = "pose_text" if model.config.num_poses == 1 else "pose_pair"
    columns = list(POSE_INPUTS[kind].values())
    poses = [dataset.with_format("numpy", columns=columns)[:][column] for column in columns]
    if kind == "pose_text":
        pose_embeds = embed_poses(model, poses[0], batch_size)
    else:
        pose_embeds = embed_pose_pairs(model, poses[0], poses[1], batch_size)
    k_values = tuple(k for k in RETRIEVAL_MODEL_RECALL_K if k <= len(texts))
    return text_pose_recalls(text_embeds, pose_embeds, k_values)


class RetrievalTrainer(WholeSetScoringTrainer):
    """
    The transformers `Trainer` for a retrieval model. `evaluate` scores Recall@K on the whole evaluation
    dataset (the loss of a batch depends on its size: it classifies within the batch), and the training logs
    carry the model's learned temperature beside the loss.
    """

    def score(self, model, dataset) -> dict[str, float]:
        return retrieval_recalls(model, self.processing_class, dataset, self.args.per_device_eval_batch_size)

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if "loss" in logs:
            logs["temperature"] = round(
                float(self.accelerator.unwrap_model(self.model).temperature.detach()), 4
            )
        super().log(logs, *args, **kwargs)


def _with_captions(dataset, name: str):
    """`dataset` without the records that have no caption (they can be neither trained nor scored on)."""
    keep = [index for index, texts in enumerate(dataset["texts"]) if len(texts) > 0]
    if len(keep) < len(dataset):
        logger.warning(
            f"{name}: {len(dataset) - len(keep)} of {len(dataset)} records have no caption; left out."
        )
        dataset = dataset.select(keep)
    return dataset


def build_phases(args: RetrievalArguments, training_args: TrainingArguments) -> list[RetrievalPhase]:
    """The phases of a run: `pretrain` on `pretrain_data` and/or `finetune` on `finetune_data`."""
    phases = []
    for name, paths, learning_rate, epochs in (
        ("pretrain", args.pretrain_data, training_args.learning_rate, training_args.num_train_epochs),
        ("finetune", args.finetune_data, args.finetune_learning_rate, args.finetune_epochs),
    ):
        if not paths:
            continue
        train = _with_captions(
            load_split(paths, args.model_kind, args.train_split), f"{name}/{args.train_split}"
        )
        if len(train) < training_args.per_device_train_batch_size:
            raise ValueError(
                f"The {name} data has {len(train)} captioned records, fewer than one batch "
                f"(`per_device_train_batch_size`={training_args.per_device_train_batch_size}); lower it or "
                "add data."
            )
        evaluation = None
        if args.eval_split is not None:
            evaluation = _with_captions(
                load_split(paths, args.model_kind, args.eval_split), f"{name}/{args.eval_split}"
            )
        columns = list(POSE_INPUTS[args.model_kind].values())
        train = train.with_format("numpy", columns=columns, output_all_columns=True)
        phases.append(RetrievalPhase(name, train, evaluation, learning_rate, epochs))
    return phases


def build_tokenizer_and_embeddings(word_embeddings: str) -> tuple:
    """The text tokenizer and its word embeddings `(vocab, dim)` for `word_embeddings` (see the field)."""
    if word_embeddings == TINY_WORD_EMBEDDINGS:
        tokenizer = build_tiny_tokenizer()
        generator = torch.Generator().manual_seed(0)
        return tokenizer, torch.randn(len(tokenizer), TINY_WORD_EMBEDDING_DIM, generator=generator)
    return pretrained_word_embeddings(word_embeddings)


def build_retrieval_model(
    args: RetrievalArguments, seed: int = 0, tokenizer=None, word_embeddings: torch.Tensor | None = None
) -> tuple:
    """
    A new retrieval model for `args` (or the saved one of `args.model_name_or_path`) and its tokenizer.

    Args:
        args ([`RetrievalArguments`]): the run's settings.
        seed (`int`, *optional*, defaults to 0): seed of a new model's initialisation.
        tokenizer (*optional*), word_embeddings (`torch.Tensor` of shape `(vocab, dim)`, *optional*):
            Give both to skip loading `args.word_embeddings` (e.g. offline).

    Returns:
        `tuple`: the model and the text tokenizer.
    """
    if args.model_name_or_path is not None:
        model, saved_tokenizer = load_retrieval_model(args.model_name_or_path)
        expected = MODEL_CLASSES[args.model_kind][0].model_type
        if model.config.model_type != expected:
            raise ValueError(
                f"`model_name_or_path` holds a {model.config.model_type!r} model, but `model_kind` "
                f"{args.model_kind!r} trains a {expected!r} one."
            )
        return model.train(), tokenizer or saved_tokenizer
    if tokenizer is None or word_embeddings is None:
        tokenizer, word_embeddings = build_tokenizer_and_embeddings(args.word_embeddings)
    if len(tokenizer) > word_embeddings.shape[0]:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the word embeddings only "
            f"{word_embeddings.shape[0]} rows."
        )
    config_class, model_class = MODEL_CLASSES[args.model_kind]
    config = config_class(
        vocab_size=word_embeddings.shape[0],
        word_embedding_dim=word_embeddings.shape[1],
        pad_token_id=tokenizer.pad_token_id,
        embed_dim=args.embed_dim,
        text_hidden_size=args.text_hidden_size,
        max_text_length=args.max_text_length,
        pose_encoder_config={"hidden_size": args.pose_hidden_size, "code_dim": args.pose_hidden_size},
    )
    torch.manual_seed(seed)
    model = model_class(config)
    model.set_word_embeddings(word_embeddings)
    return model, tokenizer


def save_retrieval_model(
    model, tokenizer, directory: str | os.PathLike, results: dict, arguments=None
) -> None:
    """
    Saves the model (safetensors), its text tokenizer and, if given, the run's `arguments` into `directory`,
    then `results` as `eval_results.json`. Every file is written whole (staged beside, then renamed), and the
    results last: a folder with `eval_results.json` holds a complete model (how a resumed run knows a phase
    done).
    """
    with staged_files(directory, last=(RESULTS_NAME,)) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if arguments is not None:
            write_json_atomically(staging / ARGUMENTS_NAME, arguments)
        write_json_atomically(staging / RESULTS_NAME, results)
        # Until the new results arrive, last, a half-replaced folder must not pass for complete.
        (Path(directory) / RESULTS_NAME).unlink(missing_ok=True)


def _phase_checkpoint(resume_from_checkpoint: str | None, phase_dir: Path) -> str | None:
    """The checkpoint a phase resumes from: its newest for `latest`, or the given one if it is the phase's."""
    if resume_from_checkpoint in (None, "latest", "true", "True"):
        return resolve_trainer_checkpoint(resume_from_checkpoint, phase_dir)
    return (
        resume_from_checkpoint
        if Path(resume_from_checkpoint).resolve().parent == phase_dir.resolve()
        else None
    )


def train_retrieval(
    args: RetrievalArguments, training_args: TrainingArguments, tokenizer=None, word_embeddings=None
) -> dict[str, Any]:
    """
    Train a retrieval model over the phases of `args`, each a [`RetrievalTrainer`] run in
    `output_dir/<phase>/`, and save the model of the last phase with its text tokenizer into `output_dir`.

    Args:
        args ([`RetrievalArguments`]): the data and the model.
        training_args (`TrainingArguments`): the optimisation, checkpoints and logging of the run.
        tokenizer (*optional*), word_embeddings (`torch.Tensor` of shape `(vocab, dim)`, *optional*):
            Give both to use them instead of loading `args.word_embeddings`.

    Returns:
        `dict`: per phase, its Recall@K on `eval_split` (`"R^T2P@1"`, ..., `"R^P2T@10"`, `"mRecall"`), its
        `train_loss` and `steps`; and the run's `global_step` (all phases). Also written to
        `output_dir/eval_results.json`.
    """
    training_args.remove_unused_columns = False  # the collator reads the records' raw columns
    training_args.dataloader_drop_last = True  # the loss contrasts the items of a batch: no short last batch
    if training_args.per_device_train_batch_size < 2:
        raise ValueError(
            "`per_device_train_batch_size` must be at least 2 (the loss contrasts the items of a batch), got "
            f"{training_args.per_device_train_batch_size}."
        )
    output_dir = Path(training_args.output_dir)
    resume = training_args.resume_from_checkpoint
    phases = build_phases(args, training_args)
    phase_dirs = [output_dir / phase.name for phase in phases]
    if resume not in (None, "latest", "true", "True") and not any(
        _phase_checkpoint(resume, d) for d in phase_dirs
    ):
        raise ValueError(
            f"`resume_from_checkpoint` must be 'latest' or a checkpoint folder of one of this run's phases "
            f"({', '.join(str(d) for d in phase_dirs)}), got {resume!r}."
        )
    model, tokenizer = build_retrieval_model(args, training_args.seed, tokenizer, word_embeddings)
    trained = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    sizes = ", ".join(f"{phase.name} ({len(phase.train_dataset):,} records)" for phase in phases)
    logger.info(f"Retrieval model ({args.model_kind}): {trained:,} trained parameters; phases: {sizes}.")

    results: dict[str, Any] = {}
    for phase, phase_dir in zip(phases, phase_dirs):
        phase_args = copy.deepcopy(training_args)
        phase_args.output_dir = str(phase_dir)
        phase_args.learning_rate, phase_args.num_train_epochs = phase.learning_rate, phase.epochs
        signature = RunSignature(
            model_kind=args.model_kind,
            phase=phase.name,
            seed=phase_args.seed,
            train_batch_size=phase_args.per_device_train_batch_size * phase_args.gradient_accumulation_steps,
            num_train_records=len(phase.train_dataset),
            max_steps=phase_args.max_steps,
            num_train_epochs=phase_args.num_train_epochs,
        )
        if resume is not None and (phase_dir / RESULTS_NAME).is_file():
            arguments = phase_dir / ARGUMENTS_NAME
            saved = json.loads(arguments.read_text(encoding="utf-8")) if arguments.is_file() else {}
            check_same_run(saved.get("run_signature"), signature, f"the finished phase {str(phase_dir)!r}")
            logger.info(
                f"Phase {phase.name} was finished by an earlier run: its model is read from {phase_dir}."
            )
            model.load_state_dict(load_file(phase_dir / SAFE_WEIGHTS_NAME))
            results[phase.name] = json.loads((phase_dir / RESULTS_NAME).read_text(encoding="utf-8"))
            continue
        trainer = RetrievalTrainer(
            model=model,
            args=phase_args,
            data_collator=RetrievalCollator(
                tokenizer, args.model_kind, model.config.max_text_length, phase_args.seed
            ),
            train_dataset=phase.train_dataset,
            eval_dataset=phase.eval_dataset,
            processing_class=tokenizer,
            callbacks=[signature],
        )
        checkpoint = _phase_checkpoint(resume, phase_dir)
        if checkpoint is not None:
            check_resumable(checkpoint, signature)
        train_output = trainer.train(resume_from_checkpoint=checkpoint)
        scores = {}
        if phase.eval_dataset is not None:
            scores = {name.removeprefix("eval_"): value for name, value in trainer.evaluate().items()}
        results[phase.name] = {
            **scores,
            "train_loss": train_output.training_loss,
            "steps": trainer.state.global_step,
        }
        logger.info(f"Phase {phase.name}: {results[phase.name]}")
        if training_args.should_save:  # the main process; the signature lets a resumed run reuse the phase
            save_retrieval_model(
                model, tokenizer, phase_dir, results[phase.name], {"run_signature": signature.signature}
            )

    results["global_step"] = sum(results[phase.name]["steps"] for phase in phases)
    if training_args.should_save:
        arguments = {"retrieval": dataclasses.asdict(args), "training": training_args.to_dict()}
        save_retrieval_model(model, tokenizer, output_dir, results, arguments)
    return results


__all__ = [
    "RETRIEVAL_TRAINING_DEFAULTS",
    "RetrievalArguments",
    "RetrievalCollator",
    "RetrievalPhase",
    "RetrievalTrainer",
    "build_phases",
    "build_retrieval_model",
    "retrieval_recalls",
    "save_retrieval_model",
    "train_retrieval",
]
