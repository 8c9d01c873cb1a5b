"""The pieces of the `clipper` command (`clipper.cli` is its entry point): the parser, the commands,
and progress rendering. Internal: users run the command, they do not import these."""
