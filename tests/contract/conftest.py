"""The contract suite runs inside the vLLM environment (`make contract`), against vLLM's own code, without a GPU.

vLLM 0.33 cannot infer a device here (`vllm serve --help` fails with "Failed to infer device type"); with
its one compiled module stubbed and `CudaPlatform` set as the current platform, its argument parsing,
request models, sampling parameters and structured-output backend all run on a CPU. What the project
sends is captured beforehand in the dev venv (`python -m tests.contract.capture DIR`): this suite reads
DIR (`APO_CONTRACT_DIR`) and never imports apo-planner's stages.
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest

sys.modules.setdefault("vllm._C_stable_libtorch", types.ModuleType("vllm._C_stable_libtorch"))
import vllm.platforms  # noqa: E402
from vllm.platforms.cuda import CudaPlatform  # noqa: E402

vllm.platforms.current_platform = CudaPlatform()

CAPTURED = Path(os.environ.get("APO_CONTRACT_DIR", "runs/contract")).resolve()
REPORT: dict[str, object] = {}  # measurements, written to DIR/report.json at the end


@pytest.fixture(scope="session")
def captured() -> Path:
    if not (CAPTURED / "bodies.jsonl").is_file():
        pytest.fail(
            f"nothing captured in {CAPTURED}: run `python -m tests.contract.capture {CAPTURED}` (make contract)"
        )
    return CAPTURED


@pytest.fixture(scope="session")
def bodies(captured: Path) -> list[dict]:
    return [json.loads(line) for line in (captured / "bodies.jsonl").read_text().splitlines()]


@pytest.fixture(scope="session")
def tokenizer(captured: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(captured / "tokenizer"))


@pytest.fixture(scope="session")
def report():
    yield REPORT
    (CAPTURED / "report.json").write_text(json.dumps(REPORT, indent=2) + "\n")
