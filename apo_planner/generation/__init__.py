"""Grammar- and JSON-schema-constrained generation: one layer for every role that asks a model.

The synthesizer (a JSON selection per trajectory) and the planner (a plan under the catalog's grammar)
both send a `GenerationRequest` to a registered backend and get a `Generation` back:

- `transformers`: the model in this process, decoding under xgrammar (`apo_planner.generation.inprocess`);
- `openai`: OpenAI-compatible servers (vLLM, `transformers serve`, hosted APIs), the constraint sent as
  vLLM's `structured_outputs` or OpenAI's `response_format` (`apo_planner.generation.server`).

`BACKENDS` is the only list of them: recipe validation, `check` and the docs read it. Another package
adds one through the `apo_planner.backends` entry-point group (docs/extending/backends.md).
"""

from __future__ import annotations

from apo_planner.generation.base import (
    Backend,
    Constraint,
    Generation,
    GenerationRequest,
    Identity,
    Sampling,
    sampling_fields,
)
from apo_planner.generation.config import BackendConfig, RoleSettings
from apo_planner.registry import Registry

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendConfig",
    "Constraint",
    "Generation",
    "GenerationRequest",
    "Identity",
    "RoleSettings",
    "Sampling",
    "make_backend",
    "sampling_fields",
]

BACKENDS: Registry[type[Backend]] = Registry(
    "generation backend",
    "apo_planner.backends",
    builtins=("apo_planner.generation.inprocess", "apo_planner.generation.server"),
)


def make_backend(config: BackendConfig) -> Backend:
    """The registered backend `config.backend` names, configured by `config`."""
    return BACKENDS.get(config.backend)(config)
