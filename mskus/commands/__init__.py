"""One module per ``mskus`` subcommand: argument set-up and the run function."""
