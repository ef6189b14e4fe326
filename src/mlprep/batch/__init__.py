"""Batch mode (`mlprep run`): files or stdin to JSONL, in one process or several, every bad record reported."""
