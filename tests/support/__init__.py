"""Test support: loopback servers (OpenAI-compatible stub, Hub double) and source-shaped row generators.

Shared by tests and benchmarks; never imported by the library."""
