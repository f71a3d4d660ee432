"""`unipose body-model`: write the generated SMPL-H-format body model file."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..body_model import (
    CACHE_ENV,
    DEFAULT_CACHE_DIR,
    SMPLH_FILE_NAME,
    generated_body_model_path,
    write_generated_body_model,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=str,  # as typed: a trailing separator names a folder
        default=None,
        help=f"File (or folder, which gets {SMPLH_FILE_NAME}) to write the generated body model to; "
        f"defaults to the cache (${CACHE_ENV}, else {DEFAULT_CACHE_DIR}).",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace an existing file that is not a generated body model (such as the SMPL-H file).",
    )


def run(args: argparse.Namespace) -> str:
    """Writes the file; returns its path (the command's output)."""
    if args.out is None:
        path = generated_body_model_path()
    else:
        out = Path(args.out).expanduser()
        # A folder: one that exists, or a path written with a trailing separator (`--out models/`).
        folder = out.is_dir() or str(args.out).endswith((os.sep, "/"))
        path = write_generated_body_model(out / SMPLH_FILE_NAME if folder else out, overwrite=args.overwrite)
    return str(path)
