"""The monitoring tests use the shared `background` fixture of tests/conftest.py."""
