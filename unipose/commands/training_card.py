"""`python -m unipose.commands.training_card ARGS`: the UniPose model card of a run of the stock `trl sft` command,
which cannot take custom code and writes TRL's generic card; ARGS are the arguments that `trl sft` was given.

```bash
ARGS="--model_name_or_path runs/stage1_cpu --trust_remote_code --dataset_name data/text_sft \\
    --assistant_only_loss --output_dir runs/text_sft --bf16 false --use_cpu --activation_checkpointing false"
trl sft $ARGS
python -m unipose.commands.training_card $ARGS   # replaces runs/text_sft/README.md
```
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ..training.model_cards import write_trl_sft_card


def main(argv: Sequence[str] | None = None) -> Path:
    """Writes the card of the `trl sft ARGS` run (`argv`: ARGS, by default the command line) and says where."""
    if argv is None:
        argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        raise SystemExit(0)
    path = write_trl_sft_card(argv)
    print(f"Wrote the UniPose model card {path}.")
    return path


if __name__ == "__main__":
    main()
