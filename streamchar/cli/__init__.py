"""The `streamchar` command line (typer)."""
