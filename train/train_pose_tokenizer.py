# Copyright 2025 The UniPose contributors. Licensed under the Apache License, Version 2.0.
"""
Stage 0: train the UniPose pose tokenizer (a VQ-VAE over SMPL-H body poses) with the transformers `Trainer`.

The recipe (YAML) names the settings: the fields of `PoseDataArguments`, `PoseTokenizerModelArguments` (the
tokenizer's size) and `PoseTokenizerTrainingArguments` (`TrainingArguments` with the loss and augmentation);
`--field value` overrides one. The same run is `unipose train-tokenizer --config ...`.

# On a CPU, offline: procedural poses and the generated body model (about 20 minutes on 2 cores)
```bash
python train/train_pose_tokenizer.py --config train/recipes/stage0_cpu.yaml
```

# A one-minute smoke test of the same recipe
```bash
python train/train_pose_tokenizer.py --config train/recipes/stage0_cpu.yaml \
    --max_steps 100 --eval_steps 50 --save_steps 50 --output_dir runs/stage0_smoke
```

# The published tokenizer's recipe: the AMASS subsets it trained on and MOYO (AMASS-format .npz; the recipe lists
# their folders under data/), the SMPL-H body model, one GPU
```bash
python train/train_pose_tokenizer.py --config train/recipes/stage0_paper.yaml \
    --body_model_path /data/body_models/smplh/SMPLH_NEUTRAL.npz \
    --output_dir runs/pose_tokenizer
```

# Resume a killed run exactly where its last checkpoint left it
```bash
python train/train_pose_tokenizer.py --config train/recipes/stage0_paper.yaml --resume_from_checkpoint latest
```

The tokenizer is saved with `save_pretrained` into `output_dir` and loads with
`AutoModel.from_pretrained(output_dir, trust_remote_code=True)`.
"""

import json

from unipose.checkpoints import enable_progress_logging
from unipose.training.pose_tokenizer import parse_arguments, train_pose_tokenizer


def main(argv: list[str] | None = None) -> dict:
    enable_progress_logging()
    data_args, model_args, training_args = parse_arguments(argv)
    results = train_pose_tokenizer(data_args, model_args, training_args)
    print(json.dumps(results, indent=2, sort_keys=True))
    return results


if __name__ == "__main__":
    main()
