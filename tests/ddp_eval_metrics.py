"""Evaluates the tiny UniPose on three conversations and writes `UniPoseSFTTrainer`'s evaluation metrics.

Launched by `tests/test_distributed.py` with `torchrun --nproc_per_node N`. With two processes and one example each
per step, the second step holds the third example and a repeat of the first (accelerate fills the last batch so
that every process has one); one process with two examples per step sees the same steps without the repeat. Rank
0 writes the metrics to `--out`.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch.distributed as dist
from datasets import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_training import make_records, sft_config

from unipose.task_formats import SIMPLE_TEMPLATES
from unipose.testing import tiny_model_and_processor
from unipose.training.sft import UniPoseSFTTrainer, prepare_model_for_stage, stage_peft_config
from unipose.training.tasks import CONVERSATION_FEATURES, build_example


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    args = parser.parse_args()

    pose_text, pose_pair = make_records("pose_text", 3, seed=0), make_records("pose_pair", 1, seed=1)
    examples = [
        build_example(pose_text[0], "text_to_pose", SIMPLE_TEMPLATES["text_to_pose"], "Stand up."),
        build_example(pose_text[1], "pose_to_text", SIMPLE_TEMPLATES["pose_to_text"], "Sit with the knees bent."),
        build_example(pose_pair[0], "pose_editing", SIMPLE_TEMPLATES["pose_editing"], "Raise the left arm."),
    ]
    dataset = Dataset.from_list(examples, features=CONVERSATION_FEATURES)
    model, processor = tiny_model_and_processor(seed=0)
    model = prepare_model_for_stage(model, 1, stage_peft_config(model.config, 1, r=4, lora_alpha=8))
    with tempfile.TemporaryDirectory() as output_dir:
        config = sft_config(output_dir, per_device_eval_batch_size=args.batch_size, ddp_backend="gloo")
        trainer = UniPoseSFTTrainer(
            model=model, args=config, train_dataset=dataset, eval_dataset=dataset, processing_class=processor
        )
        metrics = trainer.evaluate()
    if trainer.is_world_process_zero():
        world = dist.get_world_size() if dist.is_initialized() else 1
        args.out.write_text(json.dumps({"processes": world, "metrics": metrics}))


if __name__ == "__main__":
    main()
