"""Configuration of the release stage (the recipe's `release:` section)."""

from __future__ import annotations

from pydantic import Field

from apo_planner.config import StrictConfig


class ReleaseConfig(StrictConfig):
    dataset_repo: str = Field("apo-planner/apo-planner-plans-smoke", description="Hub dataset repo id")
    adapter_repo: str = Field("apo-planner/apo-planner-smoke-lora", description="Hub model repo of the adapter")
    model_repo: str = Field("apo-planner/apo-planner-smoke", description="Hub model repo of the merged planner")
    output: str = Field("release", description="staging folder: one sub-folder per repo, exactly as pushed")
    model_license: str = Field("apache-2.0", description="license of the planner weights (the base model's)")
    private: bool = False
