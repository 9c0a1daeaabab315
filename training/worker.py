"""The process `accelerate launch` starts (one per rank): train from `<output>/train_config.json`.

Started by `training.launch`, never by hand. A mistake in the input is one line on stderr and exit
status 2 (the launcher shows that line instead of a traceback from every rank).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from apo_planner.artifacts import read_json
from apo_planner.config import RecipeError
from training.apo import TrainingInputError, train
from training.config import TrainConfig
from training.launch import WORKER_ERROR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.worker", description=__doc__)
    parser.add_argument("config", type=Path, help="train section as JSON (written by training.launch)")
    parser.add_argument("--recipe-sha256", default="")
    args = parser.parse_args(argv)
    config = TrainConfig.model_validate(read_json(args.config, "train"))
    try:
        train(config, args.recipe_sha256)
    except (TrainingInputError, RecipeError, FileNotFoundError) as exc:
        print(WORKER_ERROR + " ".join(str(exc).split()), file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
