"""The preprocessing as a folder of modules (the `code/` layout of the example run)."""
