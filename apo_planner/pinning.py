"""Every Hub model and dataset a stage reads, pinned to a commit before the stage starts.

A recipe names a branch or tag (`main`, `v1.0.0`); a stage resolves it to the commit sha once, loads and
serves that sha (`from_pretrained(revision=sha)`, `vllm serve --revision sha`) and records it, so what it
read cannot move under it or under its provenance. Online the Hub answers; offline (or with the Hub out
of reach) the local snapshot's sha is used; with neither it is one line naming the recipe key.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal

from apo_planner.errors import UserError

logger = logging.getLogger(__name__)
SHA = re.compile(r"^[0-9a-f]{40}$")
LOCAL = "local"  # the revision recorded for a local folder: it has no commit

RepoType = Literal["model", "dataset"]


class PinError(UserError):
    """A revision that cannot be resolved to a commit (unknown, gated, or offline without a local snapshot)."""


def is_local(path_or_id: str | Path) -> bool:
    """A folder (or a path spelled as one, still to be made), not a Hub id."""
    return Path(path_or_id).exists() or str(path_or_id).startswith(("/", "./", "../", "~"))


def local_snapshot(repo_id: str, revision: str, repo_type: RepoType = "model") -> str | None:
    """The commit sha the local Hub cache holds for `revision` (a branch or tag it recorded), if any."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    folder = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
    if SHA.match(revision):
        return revision if (folder / "snapshots" / revision).is_dir() else None
    ref = folder / "refs" / revision
    if ref.is_file():
        sha = ref.read_text().strip()
        return sha if (folder / "snapshots" / sha).is_dir() else None
    return None


def resolve(repo_id: str, revision: str, repo_type: RepoType = "model", key: str = "revision") -> str:
    """The commit sha `revision` of `repo_id` names; `key` is the recipe key the message points at."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if SHA.match(revision):
        return revision  # a commit names itself (a wrong one fails where it is loaded, with the Hub's message)
    why = "the Hub is offline (HF_HUB_OFFLINE)"
    if not constants.is_offline_mode():
        api = HfApi()
        try:
            info = api.model_info if repo_type == "model" else api.dataset_info
            sha = info(repo_id, revision=revision).sha
            if sha:
                return sha
        except RevisionNotFoundError:
            raise PinError(f"{key}: {repo_id} has no revision {revision!r}; name a branch, tag or commit") from None
        except GatedRepoError:
            raise PinError(
                f"{key}: {repo_id} is gated; accept its terms on the Hub and log in (`hf auth login`)"
            ) from None
        except RepositoryNotFoundError:
            raise PinError(f"{key}: no {repo_type} {repo_id!r} on the Hub (or it is private: log in)") from None
        except Exception as exc:  # unreachable Hub: fall back to what is cached locally
            why = f"the Hub cannot be reached ({type(exc).__name__})"
    sha = local_snapshot(repo_id, revision, repo_type)
    if sha is None:
        if repo_id.startswith((".", "/", "~")) or repo_id.count("/") > 1:
            raise PinError(f"{key}: {repo_id}: no such folder, and it is not a Hub id either")
        kind = " --repo-type dataset" if repo_type == "dataset" else ""
        act = "unset it, or download it once" if constants.is_offline_mode() else "download it once where the Hub is"
        raise PinError(
            f"{key}: cannot pin {repo_id}@{revision} to a commit: {why} and the local Hub cache holds no snapshot of "
            f"it; {act} (`hf download {repo_id}{kind} --revision {revision}`)"
        )
    logger.info("%s: %s@%s pinned to the local snapshot %s (%s)", key, repo_id, revision, sha, why)
    return sha


def pin_model(model: str, revision: str, key: str) -> str:
    """`local` for a folder, else the commit sha of the Hub model at `revision`."""
    return LOCAL if is_local(model) else resolve(model, revision, "model", key)


UNVERIFIED = " (served elsewhere: not verified)"  # what is recorded for a server the stage did not start


def pin_served(model: str, revision: str, started: bool, key: str) -> str:
    """A served role's revision: pinned when the stage starts the server (it chooses the weights); for a
    server someone else runs, the recipe's revision marked unverified (no stage can pin what it does not load)."""
    if is_local(model):
        return LOCAL
    return resolve(model, revision, "model", key) if started else revision + UNVERIFIED


def snapshot_path(repo_id: str, sha: str) -> Path | None:
    """The local snapshot folder of `repo_id` at commit `sha`, if the Hub cache has it."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    folder = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model") / "snapshots" / sha
    return folder if folder.is_dir() else None


def download(repo_id: str, sha: str) -> Path:
    """The whole snapshot at `sha` in the Hub cache a server started from this environment reads
    (resumable, with huggingface_hub's progress bar); a no-op when it is already there."""
    from huggingface_hub import snapshot_download

    logger.info("downloading %s@%s before starting its server (resumable)", repo_id, sha[:12])
    return Path(snapshot_download(repo_id, revision=sha))
