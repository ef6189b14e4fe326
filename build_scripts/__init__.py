"""Compatibility scripts (build_image.py, build_model_image.py) and, later, the build API."""
