"""Pushing a staged folder to the Hub: create the repo, upload, tag the version.

Network calls are retried with backoff; an upload re-run after a failure completes it (the Hub
skips files it already has). The token comes from `HF_TOKEN` or the stored login and is only ever
handed to `huggingface_hub`, never printed or written.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
from requests.exceptions import ConnectionError as RequestsConnectionError
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential_jitter

DATASET_PATTERNS = ["data/*.parquet", "stats.json", "README.md"]


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, HfHubHTTPError):
        status = getattr(exc.response, "status_code", None)
        return status is None or status >= 500 or status == 429
    return isinstance(exc, (RequestsConnectionError, ConnectionError, TimeoutError, OSError))


_retry = retry(
    stop=stop_after_attempt(5),
    wait=wait_exponential_jitter(initial=1, max=30),
    retry=retry_if_exception(_transient),
    reraise=True,
)


@_retry
def _create(api: HfApi, repo_id: str, repo_type: str, private: bool) -> str:
    return str(api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True))


@_retry
def _upload(api: HfApi, folder: Path, repo_id: str, repo_type: str, patterns: list[str], message: str) -> str:
    info = api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, repo_type=repo_type, allow_patterns=patterns, commit_message=message
    )
    return info.oid


@_retry
def _tag(api: HfApi, repo_id: str, repo_type: str, tag: str, revision: str) -> None:
    api.create_tag(repo_id, tag=tag, repo_type=repo_type, revision=revision, exist_ok=True)


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    repo_type: str,
    version: str,
    patterns: list[str],
    private: bool = False,
    api: HfApi | None = None,
) -> str:
    """Upload `folder` (files matching `patterns`) to `repo_id` and tag the commit `v{version}`."""
    api = api or HfApi()
    url = _create(api, repo_id, repo_type, private)
    commit = _upload(api, Path(folder), repo_id, repo_type, patterns, f"apo-planner: release v{version}")
    _tag(api, repo_id, repo_type, f"v{version}", commit)
    return url


def push_dataset(folder: str | Path, repo_id: str, version: str, private: bool = False) -> str:
    return push_folder(
        folder, repo_id, repo_type="dataset", version=version, patterns=DATASET_PATTERNS, private=private
    )
