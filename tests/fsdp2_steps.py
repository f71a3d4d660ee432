"""Stage 3 of the tiny UniPose for a few steps under torch's FSDP2 (`fully_shard`), on CPU processes (gloo).

accelerate applies FSDP only on accelerators, so `accelerate launch` cannot run it on CPUs; this script shards the
model with torch's own `fully_shard` (each decoder layer, then the whole model) and drives
`UniPoseSFTTrainer.compute_loss` (the model's loss with the lockstep terms) with AdamW by hand. Launched by
`tests/test_distributed.py` with `torchrun --nproc_per_node N`; every process takes its share of the same global
batch of 4 (`STAGE3_LAYOUT`: a process with images against one without, pose queries against none), and rank 0
writes the global loss of each step and a checksum of the trained weights to `--out`.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_distributed import STAGE3_LAYOUT
from test_training import sft_config

from unipose.modeling_unipose import pose_shift_labels
from unipose.testing import tiny_model_and_processor
from unipose.training.sft import UniPoseSFTTrainer, prepare_model_for_stage, stage_peft_config
from unipose.training.tasks import build_task_mixture

GLOBAL_BATCH = 4


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()

    components = [{"path": str(args.corpus / kind), "tasks": [task]} for kind, task in STAGE3_LAYOUT]
    examples = build_task_mixture(components, style="instruction", seed=42)
    model, processor = tiny_model_and_processor(seed=0)
    peft_config = stage_peft_config(model.config, 3, r=4, lora_alpha=8, lora_dropout=0.0)
    model = prepare_model_for_stage(model, 3, peft_config)
    with tempfile.TemporaryDirectory() as output_dir:
        # The trainer's `TrainingArguments` set up the process group (gloo on CPU processes).
        trainer = UniPoseSFTTrainer(
            model=model, args=sft_config(output_dir), train_dataset=examples, processing_class=processor
        )
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    if world > 1:
        mesh = init_device_mesh("cpu", (world,))
        for module in model.modules():
            if type(module).__name__ == "LlamaDecoderLayer":
                fully_shard(module, mesh=mesh)
        fully_shard(model, mesh=mesh)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    share = GLOBAL_BATCH // world
    losses = []
    for step in range(args.steps):
        start = step * GLOBAL_BATCH + rank * share
        batch = trainer.data_collator([examples[index] for index in range(start, start + share)])
        # The targets of the whole global batch: each process's loss is its sum divided by all of them, scaled
        # back up by the number of processes by `compute_loss` (as `Trainer` does), since FSDP averages gradients.
        shift_labels = pose_shift_labels(batch["input_ids"], batch["labels"], trainer._unipose_config)
        targets = (shift_labels != -100).sum().double()
        if world > 1:
            dist.all_reduce(targets)
        loss = trainer.compute_loss(model, batch, num_items_in_batch=targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        reported = loss.detach() / world
        if world > 1:
            dist.all_reduce(reported)
        losses.append(float(reported))
    checksum, local, total = 0.0, 0, 0
    for _, parameter in sorted(model.named_parameters()):
        sharded = hasattr(parameter, "full_tensor")  # a DTensor: this process holds one shard
        local += parameter.to_local().numel() if sharded else parameter.numel()
        total += parameter.numel()
        if parameter.requires_grad:
            full = parameter.full_tensor() if sharded else parameter
            checksum += float(full.detach().double().abs().sum())
    if rank == 0:
        report = {"losses": losses, "checksum": checksum, "processes": world, "held_fraction": local / total}
        args.out.write_text(json.dumps(report))
    if dist.is_initialized():
        dist.barrier()


if __name__ == "__main__":
    main()
