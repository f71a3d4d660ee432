"""The argument parser of every training script: TRL's `TrlParser` (each dataclass field an option, `--config
FILE.yaml` for a recipe whose values the command line overrides, unknown keys refused), with errors of one line."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from trl import TrlParser


class ScriptArgumentParser(TrlParser):
    """[`trl.TrlParser`] whose usage errors are one line (and where to read the options), not argparse's full
    usage: a training script has some 150 options, which would bury the message.

    Example:

    ```python
    >>> parser = ScriptArgumentParser((PoseVisionArguments, TrainingArguments))
    >>> data_args, training_args = parser.parse(["--config", "recipe.yaml", "--max_steps", "10"])
    ```
    """

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\nRun `{self.prog} --help` for the options.\n")

    def parse(self, argv: Sequence[str] | None = None) -> tuple:
        """The dataclasses from `--config` (YAML) and the command line, which wins; a single `.yaml`, `.yml`
        or `.json` path stands for `--config PATH`. Unknown keys in the recipe are errors."""
        argv = recipe_argv(sys.argv[1:] if argv is None else argv)
        return tuple(self.parse_args_and_config(args=argv, fail_with_unknown_args=True))


def recipe_argv(argv: Sequence[str]) -> list[str]:
    """`argv` with a lone recipe path (`.yaml`, `.yml` or `.json`) written out as `--config PATH`."""
    argv = list(argv)
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml", ".json")):
        return ["--config", argv[0]]
    return argv


__all__ = ["ScriptArgumentParser", "recipe_argv"]
