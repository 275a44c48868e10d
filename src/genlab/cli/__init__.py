"""The `genlab` command line."""
