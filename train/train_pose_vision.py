# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
Pretrain a pose ViT by SMPL body regression from images (`unipose.training.pose_vision`), for a UniPose whose
pose vision tower has no published weights (UniPose-Tiny). The backbone lands in `--output_dir/backbone`.

Every field of `PoseVisionArguments` and of transformers' `TrainingArguments` is an option; a single YAML or
JSON file of them may be given instead.

```bash
unipose data synth --out synthetic --num 1000 --kinds image_pose --image-size 128
python train/train_pose_vision.py --output_dir runs/pose_vision --train_data synthetic --max_steps 2000 \
    --per_device_train_batch_size 64 --learning_rate 1e-3 --use_cpu true --resume_from_checkpoint latest
```
"""

import json

from unipose.checkpoints import enable_progress_logging
from unipose.training.pose_vision import parse_arguments, train_pose_vision


def main(argv: list[str] | None = None) -> dict:
    enable_progress_logging()
    data_args, training_args = parse_arguments(argv)
    results = train_pose_vision(data_args, training_args)
    print(json.dumps(results, indent=2, sort_keys=True))
    return results


if __name__ == "__main__":
    main()
