"""The process `accelerate launch` starts (one per rank): train from `<output>/train_config.json`.

Started by `apo_planner.training.launch`, never by hand. A mistake in the input (`UserError`) or the
machine's state (a full disk, a read-only folder) is one line on stderr and exit status 2 (the launcher
shows that line instead of a traceback from every rank); anything else is a bug, and its traceback reaches
the launcher, which reports it as unexpected.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from apo_planner import logs
from apo_planner.artifacts import read_json
from apo_planner.errors import UserError, machine_state_message
from apo_planner.training.apo import train
from apo_planner.training.config import TrainConfig
from apo_planner.training.launch import WORKER_ERROR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apo_planner.training.worker", description=__doc__)
    parser.add_argument("config", type=Path, help="train section as JSON (written by apo_planner.training.launch)")
    parser.add_argument("--recipe-sha256", default="")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logs.setup(args.log_level)
    config = TrainConfig.model_validate(read_json(args.config, "train"))
    try:
        train(config, args.recipe_sha256)
    except (UserError, OSError) as exc:
        message = str(exc) if isinstance(exc, UserError) else machine_state_message(exc)
        if message is None:  # an OSError that is not the machine's state: a bug, with its traceback
            raise
        print(WORKER_ERROR + " ".join(message.split()), file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
