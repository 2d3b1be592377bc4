"""Command-line interface: one module per subcommand, registered in :mod:`bridge.cli.main`."""
