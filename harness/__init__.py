"""Test harness for the Spaces, shared by tests/ and bench/ (import it with the repository root on
the import path). Never part of a deployed Space: `spaces/deploy.py` vendors `shared/` only.

- `harness.spaces`: an app served as its own process, a staged copy, weights, clients, a browser;
- `harness.drawings`: digits drawn like a person draws them, as images, bytes or mouse strokes.
"""
