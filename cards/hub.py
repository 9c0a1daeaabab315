"""Pushing a staged folder to the Hub: create the repo, upload, tag the version.

Every network call is retried with backoff on transient failures (connection errors, timeouts,
429, 5xx). A push is idempotent, so a re-run after a failure completes it: the repo is created
only if missing, the upload commits only files the Hub does not already have, and a version
tag that already exists is accepted only if it holds exactly the staged files — a released
version is immutable. The token comes from `HF_TOKEN` or the stored login and is only ever
handed to `huggingface_hub`; messages are redacted in case a server echoes it. `namespace_problems`
says, before anything runs, whether that token can write where the release goes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled
from huggingface_hub.utils import HFValidationError, filter_repo_objects, validate_repo_id
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from apo_planner.artifacts import STATS_FILE
from apo_planner.cards.config import PushConfig
from apo_planner.errors import UserError

_info = logging.getLogger(__name__).info  # progress lines; `-v` / `--log-level` set the level

DATASET_PATTERNS = ["data/*.parquet", STATS_FILE, "README.md"]
ALWAYS_REMOTE = {".gitattributes"}  # the Hub adds it to every repo
_RESUME_HINT = "\nre-run the same command to resume: repos already pushed are not pushed again"
_AUTH_HINT = "\nthe token must be a write token with access to this namespace (HF_TOKEN or `hf auth login`)"


class PushError(UserError):
    """A push that retrying cannot fix: no token, offline mode, nothing staged, or a released version
    that would change."""


@dataclass(frozen=True)
class Pushed:
    repo_id: str
    repo_type: str
    url: str
    commit: str
    tag: str
    uploaded: bool  # False when the tag already held exactly these files


def repo_url(repo_id: str, repo_type: str, revision: str | None = None) -> str:
    """The repo's page on the configured endpoint (`HF_ENDPOINT`), at `revision` if given."""
    prefix = "" if repo_type == "model" else f"{repo_type}s/"
    return f"{constants.ENDPOINT}/{prefix}{repo_id}" + (f"/tree/{revision}" if revision else "")


def _status(exc: BaseException | None) -> int | None:
    return getattr(getattr(exc, "response", None), "status_code", None)


def _transient(exc: BaseException) -> bool:
    """Worth another attempt: the network or the server hiccuped, not the request or the setup."""
    if isinstance(exc, (OfflineModeIsEnabled, httpx2.UnsupportedProtocol)):  # offline, or a mistyped HF_ENDPOINT
        return False
    if isinstance(exc, HfHubHTTPError):
        status = _status(exc)
        return status is None or status >= 500 or status in (408, 429)
    return isinstance(exc, (httpx2.TransportError, ConnectionError, TimeoutError))


def _retry_after(exc: BaseException | None) -> float | None:
    """A rate-limited server's `Retry-After` in seconds (the HTTP-date form falls back to backoff)."""
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return float(value) if value else None
    except ValueError:
        return None


@dataclass
class HubPusher:
    """Pushes folders with one retry policy (the recipe's `release.push`)."""

    retries: int = 5
    retry_wait_s: float = 1.0
    max_wait_s: float = 300.0
    api: HfApi = field(default_factory=HfApi)
    log: Callable[[str], None] = _info

    @classmethod
    def from_config(cls, config: PushConfig, log: Callable[[str], None] = _info) -> HubPusher:
        return cls(retries=config.retries, retry_wait_s=config.retry_wait_s, max_wait_s=config.max_wait_s, log=log)

    def redact(self, text: str) -> str:
        token = self.api.token or get_token()
        return text.replace(token, "***") if token else text

    def check_ready(self) -> None:
        if constants.is_offline_mode():
            raise PushError(
                "offline mode (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE) is set: unset it to push "
                "(staging itself needs no network)"
            )
        if not (self.api.token or get_token()):
            raise PushError("no Hugging Face token: set HF_TOKEN to a write token or run `hf auth login`")

    def _call(self, what: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        backoff = wait_exponential_jitter(initial=self.retry_wait_s, max=self.max_wait_s, jitter=self.retry_wait_s)

        def wait(state: RetryCallState) -> float:
            asked = _retry_after(state.outcome.exception() if state.outcome else None)
            return min(asked, self.max_wait_s) if asked is not None else backoff(state)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            reason = f"HTTP {_status(exc)}" if _status(exc) else self.redact(f"{type(exc).__name__}: {exc}")
            wait_s = state.next_action.sleep if state.next_action else 0.0
            self.log(
                f"push: {what} failed ({reason}); retry {state.attempt_number}/{self.retries - 1} in {wait_s:.1f} s"
            )

        retrying = Retrying(
            stop=stop_after_attempt(self.retries),
            wait=wait,
            retry=retry_if_exception(_transient),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(fn, *args, **kwargs)
        except (OSError, httpx2.HTTPError) as exc:  # HTTP errors, the network, and hf_xet's transfer errors
            if _transient(exc):
                what, hint = f"{what} failed after {self.retries} attempts", _RESUME_HINT
            else:
                auth = _status(exc) in (401, 403) or isinstance(exc, PermissionError)
                what, hint = f"{what} failed", _AUTH_HINT if auth else ""
            raise PushError(self.redact(f"{what}: {type(exc).__name__}: {exc}") + hint) from exc

    def push_folder(
        self,
        folder: str | Path,
        repo_id: str,
        *,
        repo_type: str,
        version: str,
        patterns: Sequence[str] = ("*",),
        delete_patterns: Sequence[str] = ("*",),
        private: bool = False,
    ) -> Pushed:
        """Make `repo_id` hold the files of `folder` matching `patterns`, tagged `v{version}`.

        Remote files matching `delete_patterns` that are not in the upload are removed, so the repo
        mirrors the staged folder instead of keeping a previous version's stale shards.
        """
        self.check_ready()
        folder = Path(folder)
        if not folder.is_dir():
            raise PushError(f"nothing staged at {folder}: run `apo-planner release` first")
        tag = f"v{version}"
        url = str(
            self._call(
                f"create {repo_id}", self.api.create_repo, repo_id, repo_type=repo_type, private=private, exist_ok=True
            )
        )
        released = self._call(f"read refs of {repo_id}", self._tag_commit, repo_id, repo_type, tag)
        if released is not None:
            self._check_same_files(folder, repo_id, repo_type, tag, patterns, delete_patterns)
            self.log(f"push: {repo_id} already holds exactly these files at {tag} ({released[:12]}); nothing to upload")
            return Pushed(repo_id, repo_type, url, released, tag, uploaded=False)
        info = self._call(
            f"upload {folder} -> {repo_id}",
            self.api.upload_folder,
            folder_path=str(folder),
            repo_id=repo_id,
            repo_type=repo_type,
            allow_patterns=list(patterns),
            delete_patterns=list(delete_patterns),
            commit_message=f"apo-planner: release {tag}",
        )
        self._call(f"tag {repo_id} {tag}", self._tag, repo_id, repo_type, tag, info.oid)
        self.log(f"pushed {repo_id} -> {url} ({tag} = {info.oid[:12]})")
        return Pushed(repo_id, repo_type, url, info.oid, tag, uploaded=True)

    def _tag_commit(self, repo_id: str, repo_type: str, tag: str) -> str | None:
        refs = self.api.list_repo_refs(repo_id, repo_type=repo_type)
        return next((t.target_commit for t in refs.tags if t.name == tag), None)

    def _tag(self, repo_id: str, repo_type: str, tag: str, commit: str) -> None:
        try:
            self.api.create_tag(repo_id, tag=tag, repo_type=repo_type, revision=commit)
        except HfHubHTTPError as exc:
            # 409: an earlier attempt whose reply was lost may have created it; fine if it is ours.
            if getattr(exc.response, "status_code", None) != 409:
                raise
            existing = self._tag_commit(repo_id, repo_type, tag)
            if existing != commit:
                raise PushError(
                    f"{repo_id}: tag {tag} appeared at {existing} while pushing {commit}; is another release running?"
                ) from None

    def _check_same_files(
        self,
        folder: Path,
        repo_id: str,
        repo_type: str,
        tag: str,
        patterns: Sequence[str],
        delete_patterns: Sequence[str],
    ) -> None:
        """A re-push of a released version is a no-op only if the tag holds exactly what would be uploaded."""
        check = self._call(
            f"verify {repo_id}@{tag}",
            self.api.verify_repo_checksums,
            repo_id,
            repo_type=repo_type,
            revision=tag,
            local_dir=folder,
        )

        def among(paths: list[str], scope: Sequence[str]) -> set[str]:
            return set(filter_repo_objects(paths, allow_patterns=list(scope)))

        differs = sorted(
            among([m["path"] for m in check.mismatches], patterns)
            | among(check.extra_paths, patterns)
            | (among(check.missing_paths, delete_patterns) - ALWAYS_REMOTE)
        )
        if differs:
            shown = ", ".join(differs[:5]) + (f" and {len(differs) - 5} more" if len(differs) > 5 else "")
            raise PushError(
                f"{repo_id} already released {tag} with other files ({shown}); a released version is immutable: "
                "bump `build.version` in the recipe to publish a new one"
            )


def push_dataset(folder: str | Path, repo_id: str, version: str, pusher: HubPusher, private: bool = False) -> Pushed:
    """`build --push-to-hub`: the built dataset's parquet shards and stats; earlier shards under data/ go."""
    return pusher.push_folder(
        folder,
        repo_id,
        repo_type="dataset",
        version=version,
        patterns=DATASET_PATTERNS,
        delete_patterns=["data/*"],
        private=private,
    )


def _whoami_problem(exc: Exception, api: HfApi) -> str:
    if isinstance(exc, LocalTokenNotFoundError):
        return "no Hugging Face token: set HF_TOKEN to a write token or run `hf auth login`"
    if _status(exc) == 401:
        return f"the token was refused by {api.endpoint} (401): set HF_TOKEN to a valid write token"
    token = api.token or get_token()
    message = f"{type(exc).__name__}: {exc}"
    return f"cannot check the token against {api.endpoint}: " + (message.replace(token, "***") if token else message)


def namespace_problems(namespace: str, api: HfApi | None = None) -> list[str]:
    """Why the release cannot create and write its repos under `namespace` (empty: it can), from the Hub's
    `whoami-v2` for the token in use: the namespace must be the token's user or one of its organisations
    with more than read access, and the token itself must be allowed to write there (role `write`, or a
    fine-grained token with `repo.write` on that user or organisation). For a preflight, before hours of
    training, rather than a 403 at the push."""
    try:
        validate_repo_id(f"{namespace}/{namespace}")
    except HFValidationError as exc:
        return [f"release.namespace {namespace!r} is not a valid Hub user or organisation name: {exc}"]
    api = api or HfApi()
    try:
        me = api.whoami(cache=True)  # the Hub rate-limits whoami: one call per token and HfApi for several namespaces
    except (OSError, httpx2.HTTPError) as exc:  # HTTP errors, the network, offline mode, no token
        return [_whoami_problem(exc, api)]
    user = me.get("name", "")
    roles = {org.get("name"): org.get("roleInOrg") for org in me.get("orgs") or []}
    access = (me.get("auth") or {}).get("accessToken") or {}
    problems = []
    if namespace != user and namespace not in roles:
        orgs = ", ".join(sorted(n for n in roles if n)) or "none"
        problems.append(
            f"release.namespace {namespace!r} is neither the token's user ({user!r}) nor one of its organisations "
            f"({orgs}): set release.namespace to one of them, or use a token of an account in {namespace!r}"
        )
    elif namespace in roles and roles[namespace] == "read":
        problems.append(f"{user!r} has only read access in the organisation {namespace!r}: ask an admin for write")
    role = access.get("role")
    if role == "read":
        problems.append("the token is read-only: create a write token (https://huggingface.co/settings/tokens)")
    elif role == "fineGrained" and not problems:
        scoped = (access.get("fineGrained") or {}).get("scoped") or []
        allowed = any(
            (s.get("entity") or {}).get("name") == namespace and "repo.write" in (s.get("permissions") or [])
            for s in scoped
        )
        if not allowed:
            problems.append(
                f"the fine-grained token cannot write to {namespace!r} (no `repo.write`): grant it in its settings"
            )
    return problems
