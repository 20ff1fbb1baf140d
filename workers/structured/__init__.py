"""Constrained decoding: response formats and tool calls compiled to xgrammar grammars (see ../shared/DESIGN.md)."""
