"""The bundled model under transformers' tensor parallelism, on CPU processes (gloo).

Launched by `tests/test_distributed.py` with `torchrun --nproc_per_node N`. Every process loads UniPose-Tiny
through `AutoModel` (its remote code) with `distributed_config=DistributedConfig(tp_size=N)`, which shards the
language model by its config's plan and `lm_head` by UniPose's, and answers the demo's seven prompts as one
greedy batch. Rank 0 writes the answers (as `tests/test_bundled_model_outputs.py` pins them) and the share of
`lm_head`'s and the first query projection's rows each process holds to `--out`.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import torch.distributed as dist
from torch.distributed.tensor import DTensor
from transformers import DistributedConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_bundled_model_outputs import answers, load_model_and_prompts


def held_rows(weight) -> float:
    """The share of `weight`'s rows held by this process."""
    local = weight.to_local() if isinstance(weight, DTensor) else weight
    return local.shape[0] / weight.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    config = DistributedConfig(tp_size=world) if world > 1 else None
    loaded = load_model_and_prompts(distributed_config=config)
    model = loaded[0]
    layer = model.model.language_model.layers[0]
    report = {
        "processes": dist.get_world_size() if dist.is_initialized() else 1,
        "answers": answers(batched=True, loaded=loaded),
        "held": {
            "lm_head": held_rows(model.lm_head.weight),
            "q_proj": held_rows(layer.self_attn.q_proj.weight),
        },
    }
    if not dist.is_initialized() or dist.get_rank() == 0:
        args.out.write_text(json.dumps(report))
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
