"""Benchmarks that print figures (run each file with .venv/bin/python bench/NAME.py)."""
