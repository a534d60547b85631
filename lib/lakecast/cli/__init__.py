"""The `lakecast` command line: one module per command group."""
