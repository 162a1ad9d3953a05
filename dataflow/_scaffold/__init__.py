"""Files that `dataflow init` copies: mapped here from the repository top level at build time."""
