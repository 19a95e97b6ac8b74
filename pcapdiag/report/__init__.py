"""Reporters: the only modules (with the CLI) that write output."""
