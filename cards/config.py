"""Configuration of the release stage (the recipe's `release:` section)."""

from __future__ import annotations

from pydantic import Field

from apo_planner.config import StrictConfig


class PushConfig(StrictConfig):
    """How `--push` talks to the Hub; none of it changes what is staged."""

    private: bool = Field(False, description="create the repos as private")
    retries: int = Field(5, ge=1, description="attempts per Hub call before the push fails")
    retry_wait_s: float = Field(1.0, gt=0, description="first backoff between attempts (doubles, with jitter)")
    max_wait_s: float = Field(300.0, gt=0, description="longest single wait, a 429's Retry-After included")


class ReleaseConfig(StrictConfig):
    dataset_repo: str = Field("apo-planner/apo-planner-plans-smoke", description="Hub dataset repo id")
    adapter_repo: str = Field("apo-planner/apo-planner-smoke-lora", description="Hub model repo of the adapter")
    model_repo: str = Field("apo-planner/apo-planner-smoke", description="Hub model repo of the merged planner")
    output: str = Field("release", description="staging folder: one sub-folder per repo, exactly as pushed")
    model_license: str = Field("apache-2.0", description="license of the planner weights (the base model's)")
    push: PushConfig = Field(default_factory=PushConfig)
