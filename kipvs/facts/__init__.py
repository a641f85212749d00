"""Parsers of real tool output into kipvs's model, and readers that run those tools."""
