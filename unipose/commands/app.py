"""`unipose app`: serve the seven tasks as a web page."""

from __future__ import annotations

import argparse
import os

from ..app import DEFAULT_MAX_NEW_TOKENS, DEFAULT_PORT, AppModel, build_app, launch
from ..demo import DEFAULT_MODEL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=os.environ.get("UNIPOSE_MODEL") or str(DEFAULT_MODEL),
        help="A UniPose checkpoint folder or Hub model id (default: $UNIPOSE_MODEL, else the bundled model).",
    )
    parser.add_argument(
        "--host", default=None, help="Address to serve on (default: 127.0.0.1, or $GRADIO_SERVER_NAME)."
    )
    parser.add_argument(
        "--port", type=int, default=None, help=f"Port (default: {DEFAULT_PORT}, or $GRADIO_SERVER_PORT)."
    )
    parser.add_argument(
        "--body-model", help="SMPLH_NEUTRAL.npz for meshes (default: the generated body model)."
    )
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)


def run(args: argparse.Namespace) -> int:
    """Loads the model, then serves the page until interrupted."""
    app = AppModel(args.model, body_model=args.body_model, max_new_tokens=args.max_new_tokens).load()
    launch(build_app(app), host=args.host, port=args.port)
    return 0
