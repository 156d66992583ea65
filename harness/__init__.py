"""Test harness for the Spaces, shared by tests/ and bench/ (installed with the project by `make
setup`). Never part of a deployed Space: `spaces/deploy.py` vendors `shared/` (and `training/`) only.

- `harness.spaces`: an app served as its own process, a staged copy, weights, clients, a browser;
- `harness.drawings`: digits drawn like a person draws them, as images, bytes or mouse strokes.
"""
