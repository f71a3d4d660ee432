"""The `unipose` subcommands, one module each (`add_arguments(parser)` and `run(args)`), listed in
`unipose.cli`."""
