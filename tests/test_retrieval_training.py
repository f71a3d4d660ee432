# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""Tests of the retrieval models' training (`unipose.training.retrieval`, `train/train_retrieval.py`): the
collator's reproducible captions, an exact resume of a run killed after a checkpoint, the script end to end,
and the arguments' checks."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict
from safetensors.torch import load_file
from transformers import TrainingArguments

from unipose.data.schema import FEATURES
from unipose.retrieval_models import PosePairTextRetrievalModel, PoseTextRetrievalModel, load_retrieval_model
from unipose.training.retrieval import (
    RetrievalArguments,
    RetrievalCollator,
    RetrievalTrainer,
    train_retrieval,
)

SCRIPT = Path(__file__).resolve().parents[1] / "train" / "train_retrieval.py"
TINY_SIZES = {"embed_dim": 32, "text_hidden_size": 16, "pose_hidden_size": 16}
WORDS = "left right arm leg raised bent straight knee elbow forward backward kneeling standing".split()


@pytest.fixture(scope="module")
def text_tokenizer():
    from unipose.tokenization import build_tiny_tokenizer

    return build_tiny_tokenizer()


def _records(kind, n, seed, num_texts=2):
    rng = np.random.default_rng(seed)
    poses = {"pose_text": ("pose",), "pose_pair": ("pose_a", "pose_b")}[kind]
    columns = {
        "id": [f"{seed}-{i}" for i in range(n)],
        "texts": [[" ".join(rng.choice(WORDS, 5)) for _ in range(num_texts)] for _ in range(n)],
        "source": ["test"] * n,
        **{column: (0.4 * rng.standard_normal((n, 22, 3))).astype(np.float32) for column in poses},
    }
    return Dataset.from_dict(columns, features=FEATURES[kind])


def _corpus(root, kind="pose_text", num_train=24):
    DatasetDict({"train": _records(kind, num_train, 0), "validation": _records(kind, 8, 1)}).save_to_disk(
        root / kind
    )
    return str(root)


def _training_args(output_dir, **overrides):
    settings = {
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
        "max_steps": 3,
        "save_steps": 2,
        "logging_steps": 1,
        "learning_rate": 1e-3,
        "seed": 0,
        "use_cpu": True,
        "report_to": "none",
        "disable_tqdm": True,
        **overrides,
    }
    return TrainingArguments(output_dir=str(output_dir), **settings)


def test_the_collator_draws_captions_from_the_batch_alone(text_tokenizer):
    records = [
        {
            "id": str(i),
            "texts": [f"caption {j} of {i}" for j in range(4)],
            "pose": np.zeros((22, 3), np.float32),
        }
        for i in range(16)
    ]
    collate = RetrievalCollator(text_tokenizer, "pose_text", max_text_length=16, seed=0)
    torch.manual_seed(1)
    first = collate(records)
    torch.manual_seed(2)
    np.random.seed(2)
    again = collate(records)  # another random state: the same captions
    torch.testing.assert_close(again["input_ids"], first["input_ids"], rtol=0, atol=0)
    assert first["poses_6d"].shape == (16, 22, 6) and first["poses_6d"].dtype == torch.float32
    # The same records in another batch (order) get other draws, and another seed other captions.
    reordered = collate(records[::-1])["input_ids"].flip(0)
    other_seed = RetrievalCollator(text_tokenizer, "pose_text", max_text_length=16, seed=1)(records)[
        "input_ids"
    ]
    for other in (reordered, other_seed):
        width = min(other.shape[1], first["input_ids"].shape[1])
        assert not torch.equal(other[:, :width], first["input_ids"][:, :width])


def test_a_run_killed_after_a_checkpoint_resumes_to_the_same_weights(text_tokenizer, tmp_path, monkeypatch):
    corpus = _corpus(tmp_path / "corpus")
    args = RetrievalArguments(pretrain_data=[corpus], finetune_data=[corpus], **TINY_SIZES)
    embeddings = torch.randn(len(text_tokenizer), 16, generator=torch.Generator().manual_seed(0))

    complete = train_retrieval(args, _training_args(tmp_path / "complete"), text_tokenizer, embeddings)
    assert complete["global_step"] == 6
    assert {"R^T2P@1", "R^P2T@5", "mRecall", "steps"} <= set(complete["finetune"]) and complete["pretrain"]
    assert json.loads((tmp_path / "complete" / "eval_results.json").read_text()) == complete

    # Killed in the fine-tuning phase when it starts its third step (after `finetune/checkpoint-2`).
    original_step = RetrievalTrainer.training_step
    steps_run, kill = [], [True]

    def training_step(self, *args, **kwargs):
        phase = Path(self.args.output_dir).name
        if phase == "finetune" and self.state.global_step == 2 and kill:
            kill.clear()  # once
            raise KeyboardInterrupt
        steps_run.append((phase, self.state.global_step))
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(RetrievalTrainer, "training_step", training_step)
    with pytest.raises(KeyboardInterrupt):
        train_retrieval(args, _training_args(tmp_path / "resumed"), text_tokenizer, embeddings)
    assert (tmp_path / "resumed" / "finetune" / "checkpoint-2").is_dir()
    assert not (tmp_path / "resumed" / "eval_results.json").exists()

    assert steps_run == [("pretrain", 0), ("pretrain", 1), ("pretrain", 2), ("finetune", 0), ("finetune", 1)]
    steps_run.clear()
    # Resuming with another batch size would not continue the same run: refused, naming the difference.
    with pytest.raises(ValueError, match="train_batch_size: checkpoint 8 vs now 2"):
        train_retrieval(
            args,
            _training_args(tmp_path / "resumed", resume_from_checkpoint="latest", per_device_train_batch_size=2),
            text_tokenizer,
            embeddings,
        )
    assert steps_run == []
    resumed = train_retrieval(
        args,
        _training_args(tmp_path / "resumed", resume_from_checkpoint="latest"),
        text_tokenizer,
        embeddings,
    )
    # The finished pretraining is read back, and fine-tuning runs only its last step.
    assert steps_run == [("finetune", 2)]
    assert resumed["global_step"] == 6 and resumed["pretrain"] == complete["pretrain"]
    assert resumed["finetune"]["mRecall"] == complete["finetune"]["mRecall"]

    final_complete = load_file(tmp_path / "complete" / "model.safetensors")
    final_resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert final_resumed.keys() == final_complete.keys()
    for name, tensor in final_complete.items():
        torch.testing.assert_close(final_resumed[name], tensor, rtol=0, atol=0, msg=name)
    # The last step changed the weights: the comparison is not of the checkpoint with itself.
    at_checkpoint = load_file(tmp_path / "resumed" / "finetune" / "checkpoint-2" / "model.safetensors")
    assert not torch.equal(at_checkpoint["temperature"], final_resumed["temperature"])
    # A finished phase is read back only by the same run: other settings are refused, naming the difference.
    with pytest.raises(ValueError, match=r"the finished phase '.*pretrain'.*seed: checkpoint 0 vs now 5"):
        train_retrieval(
            args,
            _training_args(tmp_path / "resumed", resume_from_checkpoint="latest", seed=5, max_steps=6),
            text_tokenizer,
            embeddings,
        )
    # The saved model loads with its tokenizer, ready for `unipose evaluate --retrieval-model`.
    model, tokenizer = load_retrieval_model(tmp_path / "resumed")
    assert type(model) is PoseTextRetrievalModel and len(tokenizer) == len(text_tokenizer)


def test_the_script_trains_a_pair_model_that_loads(tmp_path):
    spec = importlib.util.spec_from_file_location("train_retrieval", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    corpus = _corpus(tmp_path / "corpus", kind="pose_pair")
    output_dir = tmp_path / "run"
    argv = ["--output_dir", str(output_dir), "--model_kind", "pose_pair", "--pretrain_data", corpus]
    argv += ["--word_embeddings", "tiny", "--max_steps", "2", "--per_device_train_batch_size", "8"]
    argv += ["--use_cpu", "true", "--report_to", "none", "--disable_tqdm", "true"]
    argv += [f"--{name}={value}" for name, value in TINY_SIZES.items()]
    results = script.main(argv)
    assert results["global_step"] == 2 and set(results) == {"pretrain", "global_step"}
    assert 0 <= results["pretrain"]["mRecall"] <= 100
    model, _ = load_retrieval_model(output_dir)
    assert type(model) is PosePairTextRetrievalModel and model.config.embed_dim == 32
    assert (output_dir / "pretrain" / "model.safetensors").is_file()
    saved = json.loads((output_dir / "training_args.json").read_text())
    assert saved["retrieval"]["model_kind"] == "pose_pair" and saved["training"]["max_steps"] == 2
    # The script starts from its recipe where transformers' defaults differ.
    _, training_args = script.make_parser().parse(
        ["--output_dir", str(output_dir), "--pretrain_data", corpus]
    )
    assert (training_args.learning_rate, training_args.num_train_epochs, training_args.seed) == (2e-4, 100, 0)
    assert training_args.max_grad_norm == 0.0  # neither PoseScript nor the UniPose authors clip gradients


def test_bad_arguments_are_named(text_tokenizer, tmp_path):
    with pytest.raises(ValueError, match="nothing to train on"):
        RetrievalArguments()
    with pytest.raises(ValueError, match="`embed_dim` must be a positive integer, got 0"):
        RetrievalArguments(pretrain_data=["x"], embed_dim=0)
    with pytest.raises(ValueError, match="`finetune_learning_rate` must be positive"):
        RetrievalArguments(finetune_data=["x"], finetune_learning_rate=0.0)
    assert RetrievalArguments(pretrain_data="x", eval_split="none").eval_split is None

    corpus = _corpus(tmp_path / "corpus", num_train=6)
    args = RetrievalArguments(pretrain_data=[corpus], **TINY_SIZES)
    with pytest.raises(ValueError, match="`per_device_train_batch_size` must be at least 2"):
        train_retrieval(args, _training_args(tmp_path / "a", per_device_train_batch_size=1))
    with pytest.raises(ValueError, match="6 captioned records, fewer than one batch"):
        train_retrieval(args, _training_args(tmp_path / "b"))
    with pytest.raises(ValueError, match="`resume_from_checkpoint` must be 'latest' or a checkpoint folder"):
        train_retrieval(
            args,
            _training_args(
                tmp_path / "c", per_device_train_batch_size=2, resume_from_checkpoint=str(tmp_path)
            ),
        )
