"""`unipose training-card -- ARGS`: the UniPose model card of a run of the stock `trl sft` command, which cannot
take custom code and writes TRL's generic card; ARGS are the arguments that `trl sft` was given.

```bash
ARGS="--model_name_or_path runs/stage1_cpu --trust_remote_code --dataset_name data/text_sft \\
    --assistant_only_loss --output_dir runs/text_sft --bf16 false --use_cpu --activation_checkpointing false"
trl sft $ARGS
unipose training-card -- $ARGS   # replaces runs/text_sft/README.md
```
"""

from __future__ import annotations

import argparse

from ..training.model_cards import write_trl_sft_card


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "trl_arguments",
        nargs=argparse.REMAINDER,
        help="`--`, then the arguments the `trl sft` run was given.",
    )


def run(args: argparse.Namespace) -> str:
    trl_arguments = args.trl_arguments[1:] if args.trl_arguments[:1] == ["--"] else args.trl_arguments
    if not trl_arguments:
        raise ValueError("Give the arguments of the `trl sft` run after `--`: `unipose training-card -- ARGS`.")
    return f"Wrote the UniPose model card {write_trl_sft_card(trl_arguments)}."
