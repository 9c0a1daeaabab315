"""Configuration of the release stage (the recipe's `release:` section).

Repo ids follow from one namespace (the Hub user or organisation the token writes to):
`<namespace>/apo-planner-pairs`, `<namespace>/apo-planner-<base>-lora` and `<namespace>/apo-planner-<base>`,
each name followed by `suffix` (the smoke recipe's `-smoke` keeps test releases off the real repos).
A repo id can still be set whole (`dataset_repo`, ...) for a one-off.
"""

from __future__ import annotations

import re

from huggingface_hub.utils import HFValidationError, validate_repo_id
from pydantic import Field, model_validator

from apo_planner.config import StrictConfig

PROJECT = "apo-planner"
DATASET_NAME = f"{PROJECT}-pairs"  # what users ask `load_dataset` for


def base_name(model_id: str) -> str:
    """The base model's part of the model repo names: `Qwen/Qwen3-4B-Instruct-2507` -> `qwen3-4b-instruct-2507`
    (a local folder gives its own name)."""
    name = model_id.rstrip("/").split("/")[-1].lower()
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9._-]+", "-", name)).strip("-.")


class PushConfig(StrictConfig):
    """How `--push` talks to the Hub; none of it changes what is staged."""

    private: bool = Field(False, description="create the repos as private")
    retries: int = Field(5, ge=1, description="attempts per Hub call before the push fails")
    retry_wait_s: float = Field(1.0, gt=0, description="first backoff between attempts (doubles, with jitter)")
    max_wait_s: float = Field(300.0, gt=0, description="longest single wait, a 429's Retry-After included")


class ReleaseConfig(StrictConfig):
    namespace: str = Field(
        PROJECT, description="Hub user or organisation of the three repos (`check` verifies the token can write there)"
    )
    base: str | None = Field(
        None, description="the base model's name in the model repo ids, e.g. qwen3-4b-instruct-2507 (base_name())"
    )
    suffix: str = Field("", description="appended to every repo name, e.g. -smoke")
    dataset_repo: str | None = Field(None, description="whole dataset repo id, instead of the namespace's")
    adapter_repo: str | None = Field(None, description="whole adapter repo id, instead of the namespace's")
    model_repo: str | None = Field(None, description="whole merged-model repo id, instead of the namespace's")
    output: str = Field("release", description="staging folder: one sub-folder per repo, exactly as pushed")
    model_license: str = Field("apache-2.0", description="license of the planner weights (the base model's)")
    push: PushConfig = Field(default_factory=PushConfig)

    @model_validator(mode="after")
    def _valid_ids(self) -> ReleaseConfig:
        """A name the Hub would refuse fails when the recipe is read, not at the push after hours of training."""
        ids = [self.dataset_repo_id]
        if self.base is not None or (self.adapter_repo and self.model_repo):
            ids += [self.adapter_repo_id, self.model_repo_id]
        for repo_id in ids:
            try:
                validate_repo_id(repo_id)
            except HFValidationError as exc:
                raise ValueError(f"{repo_id!r} is not a valid Hub repo id: {exc}") from None
            if "/" not in repo_id:
                raise ValueError(f"{repo_id!r} needs a namespace: <user or organisation>/<name>")
        return self

    def with_base_model(self, model_id: str) -> ReleaseConfig:
        """The section with `base` derived from the training base model when the recipe does not name it
        (for the layer that composes the recipe: this section cannot see `train.base_model`)."""
        return self if self.base is not None else self.model_copy(update={"base": base_name(model_id)})

    @property
    def dataset_repo_id(self) -> str:
        return self.dataset_repo or f"{self.namespace}/{DATASET_NAME}{self.suffix}"

    @property
    def adapter_repo_id(self) -> str:
        return self.adapter_repo or f"{self.namespace}/{PROJECT}-{self._base()}{self.suffix}-lora"

    @property
    def model_repo_id(self) -> str:
        return self.model_repo or f"{self.namespace}/{PROJECT}-{self._base()}{self.suffix}"

    def namespaces(self) -> list[str]:
        """The Hub users or organisations the release writes to: the namespace, and those of ids set whole."""
        whole = [r for r in (self.dataset_repo, self.adapter_repo, self.model_repo) if r]
        unset = len(whole) < 3
        return sorted({r.split("/")[0] for r in whole} | ({self.namespace} if unset else set()))

    def _base(self) -> str:
        if self.base is None:
            raise ValueError(
                "release.base is not set: name the base model for the model repo ids "
                "(e.g. --set release.base=qwen3-4b-instruct-2507 for Qwen/Qwen3-4B-Instruct-2507)"
            )
        return self.base
