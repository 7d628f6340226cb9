"""The headless face: argument parsing, output and exit codes. Never imports textual."""
