"""The ``unipose`` command line.

Each subcommand is a module of ``unipose.commands`` with two functions, ``add_arguments(parser)`` and
``run(args)``, which returns an exit code, the text to show, or both as a tuple; a command that runs a training
script has ``parse_arguments(argv)`` instead of ``add_arguments``, so that it reads the script's own options
(``--config`` recipe and all). The library modules whose work they call neither parse arguments nor print. This file only lists the commands, prints what they return, and
imports a command's module when it is used so that ``unipose --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("unipose.commands.demo", "Run the seven UniPose tasks on bundled inputs; writes a report with renders."),
    "app": ("unipose.commands.app", "Serve the seven UniPose tasks as a web page (Gradio; the `app` extra)."),
    "sample-poses": ("unipose.commands.sample_poses", "Sample procedural poses and write them (and a contact sheet)."),
    "body-model": ("unipose.commands.body_model", "Generate the offline SMPL-H-format body model file."),
    "train-tokenizer": ("unipose.commands.train_tokenizer", "Stage 0: train the pose tokenizer (VQ-VAE)."),
    "data": ("unipose.commands.data", "Build corpora: `unipose data synth --out DIR --num N --seed S`."),
    "conversations": (
        "unipose.commands.conversations",
        "Write task conversations as JSON lines (poses as code tokens) for the stock `trl sft` command.",
    ),
    "training-card": (
        "unipose.commands.training_card",
        "Write the UniPose model card of a stock `trl sft` run: `unipose training-card -- ARGS`.",
    ),
    "evaluate": ("unipose.commands.evaluate", "Evaluate a model on the paper's tasks; writes JSON and a Markdown report."),
    "convert": ("unipose.commands.convert", "Convert the published UniPose checkpoints into this format."),
    "verify": ("unipose.commands.verify", "Compare a converted checkpoint with the published program's recorded outputs."),
}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unipose", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs a subcommand. Errors are printed as one line (`unipose COMMAND: error: ...`) with exit code 1, usage
    errors with exit code 2; `--debug` anywhere on the line, or `UNIPOSE_DEBUG=1`, shows the traceback instead."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv or os.environ.get("UNIPOSE_DEBUG", "") not in ("", "0")
    argv = [arg for arg in argv if arg != "--debug"]
    parser = make_parser()
    # Parse the command name first, then let its module declare the rest of its arguments.
    known, _ = parser.parse_known_args(argv[:1] if argv and not argv[0].startswith("-") else argv)
    if known.command is None:
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(known._module)
    own_parser = hasattr(module, "parse_arguments")
    if not own_parser:
        sub = argparse.ArgumentParser(prog=f"unipose {known.command}", description=COMMANDS[known.command][1])
        module.add_arguments(sub)
        args = sub.parse_args(argv[1:])
    try:
        if own_parser:  # inside: a recipe's bad value is reported as one line too
            args = module.parse_arguments(argv[1:])
        result = module.run(args)
    except KeyboardInterrupt:
        print(f"unipose {known.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - every failure is reported as one line
        if debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"unipose {known.command}: error: {type(error).__name__}: {message}", file=sys.stderr)
        print("(run again with --debug, or UNIPOSE_DEBUG=1, for the traceback)", file=sys.stderr)
        return 1
    if isinstance(result, tuple):  # text to show and an exit code
        text, code = result
        print(text)
        return int(code)
    if isinstance(result, str):
        print(result)
        return 0
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
