import os
from pathlib import Path

import pytest

from benchmarks.workloads import WEATHER_TOOL, message, nemotron_row, tool_call, write_jsonl
from benchmarks.workloads import conversation as weather_conversation

__all__ = [
    "FIXTURES",
    "REPO",
    "WEATHER_TOOL",
    "hub_env",
    "message",
    "nemotron_row",
    "tool_call",
    "weather_conversation",
    "write_jsonl",
]

# The contract suite runs inside the vLLM environment (`make contract`), never in `make test`.
collect_ignore = ["contract"]

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
SMOKE_SOURCE = REPO / "recipes" / "data" / "smoke_trajectories.jsonl.gz"  # the smoke recipe's bundled rows


@pytest.fixture(autouse=True, scope="session")
def _offline(tmp_path_factory) -> None:
    # Tests build their own models and data; reaching a hub would be a bug.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    # bfcl-eval writes under its project root from the moment it is imported
    os.environ.setdefault("BFCL_PROJECT_ROOT", str(tmp_path_factory.mktemp("bfcl-root")))


def hub_env(endpoint: str, token: str) -> dict[str, str]:
    """The test environment for a subprocess that pushes to a loopback Hub: online, but only to it."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return env | {"HF_ENDPOINT": endpoint, "HF_TOKEN": token}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny random Qwen3 model folder, made once per test run (executor and planner of the serving tests)."""
    from apo_planner.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny")
