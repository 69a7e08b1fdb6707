"""One module per subcommand. Each exposes `register(subparsers)`, which adds its
parser and sets `run=<callable(args) -> exit code>` as a default."""
