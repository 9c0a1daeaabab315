import json
import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(autouse=True, scope="session")
def _offline(tmp_path_factory) -> None:
    # Tests build their own models and data; reaching a hub would be a bug.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    # bfcl-eval writes under its project root from the moment it is imported
    os.environ.setdefault("BFCL_PROJECT_ROOT", str(tmp_path_factory.mktemp("bfcl-root")))


def nemotron_row(messages, tools=(WEATHER_TOOL,), uuid="row-1", metadata=None):
    return {
        "uuid": uuid,
        "license": "CC BY 4.0",
        "generator": "Qwen3-235B-A22B",
        "version": "v1",
        "category": "tool_calling",
        "reasoning": "on",
        "metadata": metadata if metadata is not None else json.dumps({"tools": list(tools)}),
        "messages": messages,
    }


def tool_call(cid, name, args):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def weather_conversation(*calls_and_results, final="Done.", query="Weather?"):
    """[(tool, args, result), ...] as one assistant turn per call, then a final answer."""
    messages = [{"role": "user", "content": query, "tool_calls": []}]
    for i, (tool, args, result) in enumerate(calls_and_results):
        cid = f"c{i}"
        messages.append(
            {
                "role": "assistant",
                "content": f"<think>Step {i}.</think>",
                "tool_calls": [tool_call(cid, tool, args)],
            }
        )
        messages.append({"role": "tool", "content": result, "tool_call_id": cid})
    if final is not None:
        messages.append({"role": "assistant", "content": final, "tool_calls": []})
    return messages


def write_jsonl(path: Path, rows) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return path


def hub_env(endpoint: str, token: str) -> dict[str, str]:
    """The test environment for a subprocess that pushes to a loopback Hub: online, but only to it."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return env | {"HF_ENDPOINT": endpoint, "HF_TOKEN": token}
