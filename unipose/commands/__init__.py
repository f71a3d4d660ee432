"""The `unipose` subcommands, one module each (`add_arguments(parser)` and `run(args)`), listed in
`unipose.cli`."""

from __future__ import annotations

import argparse
import inspect


def call_with_options(function, args: argparse.Namespace, **values):
    """`function` (or a class) called with the options of `args` named like its parameters, `values` taking the
    place of options of the same names."""
    parameters = inspect.signature(function).parameters
    return function(**{name: value for name, value in vars(args).items() if name in parameters} | values)
