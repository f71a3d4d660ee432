# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
Train the text-pose (or pose-pair-text) retrieval model that the UniPose evaluation scores with
(`unipose.training.retrieval`): pretraining on automatic captions, then fine-tuning on human ones, each phase
a transformers `Trainer` run in `--output_dir/<phase>/`; the model of the last phase, with its text tokenizer,
lands in `--output_dir` (for `unipose evaluate --retrieval-model`).

Every field of `RetrievalArguments` and of transformers' `TrainingArguments` is an option; a YAML file of
them can be given with `--config` (options on the command line win). `learning_rate` and `num_train_epochs`
are the pretraining phase's (`finetune_learning_rate`, `finetune_epochs` the fine-tuning's); `max_steps` sets
the steps of each phase. This script starts from `RETRIEVAL_TRAINING_DEFAULTS` where they differ from
transformers' defaults: learning rate 2e-4 and no gradient clipping (as PoseScript and the UniPose authors
train), 100 epochs, batch 256, cosine schedule, seed 0 (this project's; the references' are listed there).

# Offline smoke run on the synthetic corpus (tiny tokenizer, random word embeddings)
```bash
unipose data synth --out synthetic --num 1000
python train/train_retrieval.py --output_dir runs/retrieval_smoke --pretrain_data synthetic \
    --word_embeddings tiny --per_device_train_batch_size 32 --max_steps 200 --use_cpu
```

# PoseScript: pretrain on PoseScript-A, fine-tune on PoseScript-H, DistilBERT word embeddings
```bash
python train/train_retrieval.py --output_dir runs/retrieval_posescript --model_kind pose_text \
    --pretrain_data data/posescript-A --finetune_data data/posescript-H \
    --word_embeddings distilbert-base-uncased
```

# PoseFix pairs (the pair model), resuming a killed run where its last checkpoint left it
```bash
python train/train_retrieval.py --output_dir runs/retrieval_posefix --model_kind pose_pair \
    --pretrain_data data/posefix-A --finetune_data data/posefix-H --resume_from_checkpoint latest
```
"""

import json

from transformers import TrainingArguments

from unipose.arguments import ScriptArgumentParser
from unipose.checkpoints import enable_progress_logging
from unipose.training.retrieval import RETRIEVAL_TRAINING_DEFAULTS, RetrievalArguments, train_retrieval


def make_parser() -> ScriptArgumentParser:
    parser = ScriptArgumentParser((RetrievalArguments, TrainingArguments))
    # The recipe's defaults; a `--config` recipe and the command line override them.
    parser.set_defaults(**RETRIEVAL_TRAINING_DEFAULTS)
    return parser


def main(argv: list[str] | None = None) -> dict:
    enable_progress_logging()
    args, training_args = make_parser().parse(argv)
    results = train_retrieval(args, training_args)
    print(json.dumps(results, indent=2, sort_keys=True))
    return results


if __name__ == "__main__":
    main()
