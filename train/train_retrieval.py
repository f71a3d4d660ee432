# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
Train the text-pose (or pose-pair-text) retrieval model that the UniPose evaluation scores with.

Pretraining on automatic captions, then fine-tuning on human ones; the model of the last phase, with its
text tokenizer, lands in `--output_dir`. Every field of `RetrievalTrainingArguments` is an option, and a
YAML file of them can be given with `--config` (options on the command line win).

# Offline smoke run on the synthetic corpus (tiny tokenizer, random word embeddings)
```bash
unipose data synth --out synthetic --num 1000
python train/train_retrieval.py --output_dir runs/retrieval_smoke --pretrain_data synthetic \
    --word_embeddings tiny --batch_size 32 --max_steps 200
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

from unipose.checkpoints import enable_progress_logging
from unipose.evaluation.retrieval_training import parse_arguments, train_retrieval


def main(argv: list[str] | None = None) -> dict:
    enable_progress_logging()
    results = train_retrieval(parse_arguments(argv))
    print(json.dumps(results, indent=2, sort_keys=True))
    return results


if __name__ == "__main__":
    main()
