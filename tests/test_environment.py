"""The design's packages must import together in one environment (vLLM is a separate server)."""

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_all_design_packages_import_together_in_one_environment(tmp_path):
    code = """
import datasets, huggingface_hub, trl, peft, transformers, lm_eval, jinja2, xgrammar, openai, tenacity
import numpy, pyarrow, torch
import bfcl_eval
from bfcl_eval.constants.model_config import MODEL_CONFIG_MAPPING
assert MODEL_CONFIG_MAPPING
assert numpy.__version__ == "1.26.4", numpy.__version__
assert torch.__version__.startswith("2.13.0"), torch.__version__
datasets.Dataset.from_dict({"x": [1, 2]}).to_pandas()  # pyarrow really works with this numpy
print("ok")
"""
    env = {**os.environ, "BFCL_PROJECT_ROOT": str(tmp_path)}  # bfcl-eval reads it at import time
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_cli_help_works(capsys):
    from apo_planner.entry.cli import build_parser

    parser = build_parser()
    for argv in (["--help"], ["build", "--help"], ["release", "--help"]):
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            assert exc.code == 0
    assert "--synthesizer" in capsys.readouterr().out
