"""Pushing to the Hub, against a loopback Hub (`tests.support.hub`) with real `huggingface_hub` calls."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi, constants

from apo_planner.cards.hub import HubPusher, PushError, namespace_problems, push_dataset
from apo_planner.entry.cli import main
from tests.conftest import REPO, hub_env
from tests.support.hub import HubStub

TOKEN = "hf_test_NotARealToken_but_secret_1234567890"


@pytest.fixture
def online(monkeypatch):
    # The suite runs offline; these tests talk to a Hub on 127.0.0.1 only.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def staged(tmp_path):
    folder = tmp_path / "staged"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train-00000-of-00001.parquet").write_bytes(bytes(range(256)) * 8)
    (folder / "stats.json").write_text(json.dumps({"pairs": 3}) + "\n")
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# plans\n")
    return folder


def _pusher(hub: HubStub, log: list[str] | None = None, token: str = TOKEN, retries: int = 3) -> HubPusher:
    api = HfApi(endpoint=hub.url, token=token)
    return HubPusher(retries=retries, retry_wait_s=0.01, api=api, log=(log.append if log is not None else print))


def _local_files(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_push_creates_the_repo_uploads_every_staged_file_and_tags_the_commit(online, staged):
    with HubStub(token=TOKEN) as hub:
        pushed = _pusher(hub).push_folder(staged, "org/plans", repo_type="dataset", version="1.2.0")
        repo = hub.repo("org/plans", "dataset")
        assert pushed.uploaded and pushed.tag == "v1.2.0" and repo.tags == {"v1.2.0": pushed.commit}
        assert pushed.url.endswith("/datasets/org/plans")
        assert {k: v for k, v in repo.files("v1.2.0").items() if k != ".gitattributes"} == _local_files(staged)
        assert [hub.count(k) for k in ("create", "commit", "tag")] == [1, 1, 1]
        assert hub.unknown == []


def test_a_model_and_a_dataset_may_share_an_id(online, staged):
    with HubStub(token=TOKEN) as hub:
        for repo_type in ("dataset", "model"):
            _pusher(hub).push_folder(staged, "org/planner", repo_type=repo_type, version="1.0.0")
        assert sorted(hub.repos) == [("dataset", "org/planner"), ("model", "org/planner")]


def test_failed_upload_and_tag_calls_are_retried_until_the_push_completes(online, staged):
    # 520 is a 5xx huggingface_hub does not retry itself, so the upload's retry here is the pusher's.
    log: list[str] = []
    with HubStub(token=TOKEN, faults={"commit": [520], "tag": [503, 408]}) as hub:
        pushed = _pusher(hub, log).push_folder(staged, "org/model", repo_type="model", version="0.1.0")
        assert hub.count("commit") == 2 and hub.count("tag") == 3
        assert hub.repo("org/model").tags == {"v0.1.0": pushed.commit}
        assert len(hub.repo("org/model").commits) == 2  # the Hub's initial commit + exactly one upload
    assert [line.split(" failed")[0] for line in log if "failed" in line] == [
        f"push: upload {staged} -> org/model",
        "push: tag org/model v0.1.0",
        "push: tag org/model v0.1.0",
    ]


def test_a_rate_limited_call_waits_as_long_as_retry_after_says(online, staged):
    log: list[str] = []
    with HubStub(token=TOKEN, faults={"create": [429]}, retry_after="0.3") as hub:
        _pusher(hub, log).push_folder(staged, "org/model", repo_type="model", version="0.1.0")
    assert log[0] == "push: create org/model failed (HTTP 429); retry 1/2 in 0.3 s"


def test_a_push_that_keeps_failing_says_so_and_a_rerun_completes_it(online, staged):
    with HubStub(token=TOKEN, faults={"create org/model": [503] * 3}) as hub:
        with pytest.raises(PushError, match=r"create org/model failed after 3 attempts(.|\n)*re-run the same command"):
            _pusher(hub).push_folder(staged, "org/model", repo_type="model", version="0.1.0")
        assert hub.repos == {}
        pushed = _pusher(hub).push_folder(staged, "org/model", repo_type="model", version="0.1.0")
        assert hub.repo("org/model").tags == {"v0.1.0": pushed.commit}


def test_an_endpoint_with_a_bad_scheme_fails_at_once(online, staged):
    log: list[str] = []
    pusher = HubPusher(
        retries=3, retry_wait_s=0.01, api=HfApi(endpoint="htp://127.0.0.1:9", token=TOKEN), log=log.append
    )
    with pytest.raises(PushError, match="create org/model failed: UnsupportedProtocol"):
        pusher.push_folder(staged, "org/model", repo_type="model", version="0.1.0")
    assert log == []


def test_re_pushing_a_released_version_uploads_nothing_and_changed_files_are_refused(online, staged):
    with HubStub(token=TOKEN) as hub:
        first = _pusher(hub).push_folder(staged, "org/plans", repo_type="dataset", version="1.0.0")
        again = _pusher(hub).push_folder(staged, "org/plans", repo_type="dataset", version="1.0.0")
        assert not again.uploaded and again.commit == first.commit and hub.count("commit") == 1

        (staged / "stats.json").write_text(json.dumps({"pairs": 4}) + "\n")
        with pytest.raises(PushError, match=r"already released v1\.0\.0 with other files \(stats\.json\)"):
            _pusher(hub).push_folder(staged, "org/plans", repo_type="dataset", version="1.0.0")
        (staged / "stats.json").write_text(json.dumps({"pairs": 3}) + "\n")
        (staged / "extra.md").write_text("new\n")
        with pytest.raises(PushError, match=r"with other files \(extra\.md\)"):
            _pusher(hub).push_folder(staged, "org/plans", repo_type="dataset", version="1.0.0")
        assert hub.count("commit") == 1 and hub.repo("org/plans", "dataset").tags == {"v1.0.0": first.commit}


def test_a_new_version_removes_files_the_staged_folder_no_longer_has(online, staged):
    with HubStub(token=TOKEN) as hub:
        _pusher(hub).push_folder(staged, "org/plans", repo_type="dataset", version="1.0.0")
        old = staged / "data" / "train-00000-of-00001.parquet"
        old.rename(staged / "data" / "train-00000-of-00002.parquet")
        (staged / "data" / "train-00001-of-00002.parquet").write_bytes(b"more rows")
        _pusher(hub).push_folder(staged, "org/plans", repo_type="dataset", version="1.1.0")
        repo = hub.repo("org/plans", "dataset")
        assert sorted(p for p in repo.files("v1.1.0") if p.startswith("data/")) == [
            "data/train-00000-of-00002.parquet",
            "data/train-00001-of-00002.parquet",
        ]
        assert "data/train-00000-of-00001.parquet" in repo.files("v1.0.0")  # a released tag is untouched


def test_build_push_replaces_the_shards_and_keeps_the_rest_of_the_repo(online, staged, tmp_path):
    card = tmp_path / "card"
    card.mkdir()
    (card / "README.md").write_text("---\nlicense: mit\n---\n# the card pushed by `release`\n")
    (staged / "README.md").unlink()
    (staged / "cache.sqlite").write_bytes(b"not for the hub")
    with HubStub(token=TOKEN) as hub:
        push_dataset(staged, "org/plans", "1.0.0", _pusher(hub))
        _pusher(hub).push_folder(card, "org/plans", repo_type="dataset", version="1.0.1", delete_patterns=[])
        (staged / "data" / "train-00000-of-00001.parquet").rename(staged / "data" / "train-00000-of-00002.parquet")
        (staged / "data" / "train-00001-of-00002.parquet").write_bytes(b"more rows")
        pushed = push_dataset(staged, "org/plans", "1.1.0", _pusher(hub))
        files = hub.repo("org/plans", "dataset").files(pushed.tag)
    assert sorted(files) == [
        ".gitattributes",
        "README.md",
        "data/train-00000-of-00002.parquet",
        "data/train-00001-of-00002.parquet",
        "stats.json",
    ]
    assert files["README.md"] == (card / "README.md").read_bytes()


def test_a_rejected_token_fails_at_once_with_a_hint_and_is_never_echoed(online, staged, capsys):
    wrong = "hf_wrong_token_0987654321"
    with HubStub(token=TOKEN) as hub:
        with pytest.raises(PushError) as failure:
            _pusher(hub, token=wrong).push_folder(staged, "org/plans", repo_type="dataset", version="1.0.0")
        assert hub.count("create") == 1  # a 401 is not retried
    message = str(failure.value)
    assert "401" in message and "write token" in message
    assert wrong not in message and TOKEN not in message
    out = capsys.readouterr()
    assert wrong not in out.out + out.err
    assert _pusher(hub, token=wrong).redact(f"proxy echoed Bearer {wrong}") == "proxy echoed Bearer ***"


def test_no_token_or_offline_mode_fail_before_any_request(staged, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as under `make test`, whatever pytest was started with
    with HubStub(token=TOKEN) as hub:
        with pytest.raises(PushError, match="HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE"):
            _pusher(hub).push_folder(staged, "org/plans", repo_type="dataset", version="1.0.0")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setattr("apo_planner.cards.hub.get_token", lambda: None)
        with pytest.raises(PushError, match="no Hugging Face token"):
            HubPusher(api=HfApi(endpoint=hub.url, token=None)).push_folder(
                staged, "org/plans", repo_type="dataset", version="1.0.0"
            )
        assert hub.calls == []


@pytest.mark.slow
def test_build_push_to_hub_publishes_the_built_dataset_at_HF_ENDPOINT(tmp_path):
    out = tmp_path / "ds"
    args = [sys.executable, "-m", "apo_planner.entry.cli", "build", "--synthesizer", "rule", "--limit", "20"]
    args += ["--output", str(out), "--push-to-hub", "me/plans", "--set", "build.version=2.0.0"]
    with HubStub(token=TOKEN) as hub:
        run = subprocess.run(args, cwd=REPO, env=hub_env(hub.url, TOKEN), capture_output=True)
        assert run.returncode == 0, run.stderr.decode()
        files = hub.repo("me/plans", "dataset").files("v2.0.0")
    assert files["stats.json"] == (out / "stats.json").read_bytes()
    assert sorted(p for p in files if p.startswith("data/")) == sorted(
        p.relative_to(out).as_posix() for p in (out / "data").glob("*.parquet")
    )
    assert TOKEN.encode() not in run.stdout + run.stderr


def test_build_push_to_hub_refuses_a_shard_before_building(tmp_path, capsys):
    argv = ["build", "--shard", "0/2", "--output", str(tmp_path / "ds"), "--push-to-hub", "me/plans"]
    assert main(argv) == 2
    assert "--merge-shards" in capsys.readouterr().err and not (tmp_path / "ds").exists()


def test_a_transfer_error_from_hf_xet_becomes_a_push_error_with_a_hint():
    from hf_xet import XetAuthenticationError

    def upload():
        raise XetAuthenticationError("token refused by the CAS server")

    with pytest.raises(PushError, match=r"upload failed: XetAuthenticationError(.|\n)*write token"):
        HubPusher(retries=3, retry_wait_s=0.01, api=HfApi(token=TOKEN))._call("upload", upload)


# --- what was pushed reads back (the double's download side, with the real client) ----------------


def test_a_pushed_file_downloads_at_its_tag_the_branch_and_a_commit_with_the_headers_the_client_checks(
    online, staged, tmp_path
):
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
    from huggingface_hub.utils.sha import git_hash

    with HubStub(token=TOKEN) as hub:
        first = _pusher(hub).push_folder(staged, "org/plans", repo_type="dataset", version="1.0.0")
        old = (staged / "stats.json").read_bytes()
        (staged / "stats.json").write_text(json.dumps({"pairs": 4}) + "\n")
        _pusher(hub).push_folder(staged, "org/plans", repo_type="dataset", version="1.1.0")

        def download(revision: str, filename: str = "stats.json", repo_id: str = "org/plans") -> bytes:
            where = {"endpoint": hub.url, "token": TOKEN, "cache_dir": tmp_path / "cache"}
            return Path(
                hf_hub_download(repo_id, filename, repo_type="dataset", revision=revision, **where)
            ).read_bytes()

        assert download("v1.0.0") == old == download(first.commit)
        assert download("v1.1.0") == download("main") == (staged / "stats.json").read_bytes()
        url = hf_hub_url("org/plans", "stats.json", repo_type="dataset", revision="v1.0.0", endpoint=hub.url)
        meta = get_hf_file_metadata(url, token=TOKEN)
        assert (meta.etag, meta.commit_hash, meta.size) == (git_hash(old), first.commit, len(old))
        with pytest.raises(EntryNotFoundError):
            download("v1.0.0", "missing.json")
        with pytest.raises(RevisionNotFoundError):
            download("v9.9.9")
        with pytest.raises(RepositoryNotFoundError):
            download("main", repo_id="org/nothing")
        assert hub.unknown == []


def test_trees_paths_info_and_repo_info_read_a_revision_as_the_hub_answers_them(online, staged):
    from huggingface_hub import RepoFile, RepoFolder
    from huggingface_hub.utils import get_session

    with HubStub(token=TOKEN) as hub:
        pushed = _pusher(hub).push_folder(staged, "org/plans", repo_type="dataset", version="1.0.0")
        api = HfApi(endpoint=hub.url, token=TOKEN)
        top = {(type(e).__name__, e.path) for e in api.list_repo_tree("org/plans", repo_type="dataset")}
        assert top == {
            ("RepoFile", ".gitattributes"),
            ("RepoFile", "README.md"),
            ("RepoFile", "stats.json"),
            ("RepoFolder", "data"),
        }
        shards = api.list_repo_tree("org/plans", "data", repo_type="dataset", revision="v1.0.0", expand=True)
        assert [(e.path, e.size, e.last_commit.oid) for e in shards] == [
            ("data/train-00000-of-00001.parquet", 2048, pushed.commit)
        ]
        every = {e.path for e in api.list_repo_tree("org/plans", repo_type="dataset", recursive=True)}
        assert every == {path for _, path in top} | {"data/train-00000-of-00001.parquet"}
        info = api.get_paths_info("org/plans", ["data", "stats.json", "absent"], repo_type="dataset", revision="v1.0.0")
        assert [(type(e), e.path) for e in info] == [(RepoFolder, "data"), (RepoFile, "stats.json")]
        dataset = api.dataset_info("org/plans", revision="v1.0.0", files_metadata=True)
        assert dataset.sha == pushed.commit and dataset.card_data.license == "mit"
        sizes = {s.rfilename: s.size for s in dataset.siblings}
        assert sizes["stats.json"] == (staged / "stats.json").stat().st_size
        url = f"{hub.url}/datasets/org/plans/resolve/v1.0.0/data/train-00000-of-00001.parquet"
        part = get_session().get(url, headers={"Range": "bytes=256-259", "authorization": f"Bearer {TOKEN}"})
        assert (part.status_code, part.content) == (206, bytes(range(4)))
        assert hub.unknown == []


def test_a_branch_is_a_revision_and_a_private_repo_is_hidden_from_anonymous_readers(online, staged):
    from huggingface_hub.errors import RepositoryNotFoundError

    with HubStub(token=TOKEN) as hub:
        _pusher(hub).push_folder(staged, "org/model", repo_type="model", version="1.0.0", private=True)
        api = HfApi(endpoint=hub.url, token=TOKEN)
        api.create_branch("org/model", branch="draft")
        api.upload_file(path_or_fileobj=b"draft\n", path_in_repo="NOTES.md", repo_id="org/model", revision="draft")
        assert "NOTES.md" in hub.repo("org/model").files("draft") and "NOTES.md" not in hub.repo("org/model").files()
        assert {b.name for b in api.list_repo_refs("org/model").branches} == {"main", "draft"}
        anonymous = HfApi(endpoint=hub.url, token=False)
        with pytest.raises(RepositoryNotFoundError):
            anonymous.model_info("org/model")
        hub.repo("org/model").private = False
        assert anonymous.model_info("org/model", revision="draft").sha == hub.repo("org/model").sha("draft")
        assert hub.unknown == []


# --- the namespace the release writes to, checked before anything runs -----------------------------


FINE_GRAINED = {"orgs": {"team": "write"}, "token_role": "fineGrained"}
WRITES_TEAM = {"entity": {"type": "org", "name": "team"}, "permissions": ["repo.content.read", "repo.write"]}
READS_TEAM = {"entity": {"type": "org", "name": "team"}, "permissions": ["repo.content.read"]}


@pytest.mark.parametrize(
    ("namespace", "identity", "problem"),
    [
        ("me", {}, None),
        ("team", {"orgs": {"team": "write"}}, None),
        ("team", {"orgs": {"team": "contributor"}}, None),
        ("team", {"orgs": {"team": "read"}}, "only read access in the organisation 'team'"),
        ("elsewhere", {"orgs": {"team": "admin"}}, r"neither the token's user \('me'\) nor one of its organisations"),
        ("me", {"token_role": "read"}, "the token is read-only"),
        ("team", FINE_GRAINED | {"fine_grained": {"scoped": [READS_TEAM]}}, "no `repo.write`"),
        ("team", FINE_GRAINED | {"fine_grained": {"scoped": [WRITES_TEAM]}}, None),
        ("not a name", {}, "not a valid Hub user or organisation name"),
    ],
)
def test_the_namespace_check_says_whether_the_token_can_write_there(online, namespace, identity, problem):
    with HubStub(token=TOKEN, user="me", **identity) as hub:
        problems = namespace_problems(namespace, HfApi(endpoint=hub.url, token=TOKEN))
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and re.search(problem, problems[0]), problems


def test_the_namespace_check_asks_the_hub_once_for_every_namespace_of_a_release(online):
    with HubStub(token=TOKEN, user="me", orgs={"team": "write"}) as hub:
        api = HfApi(endpoint=hub.url, token=TOKEN)
        assert [namespace_problems(n, api) for n in ("me", "team")] == [[], []]
        assert hub.count("whoami") == 1  # the Hub rate-limits whoami


def test_the_namespace_check_names_a_refused_or_missing_token_without_echoing_it(online, monkeypatch):
    wrong = "hf_wrong_token_0987654321"
    with HubStub(token=TOKEN) as hub:
        (refused,) = namespace_problems("me", HfApi(endpoint=hub.url, token=wrong))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setattr("huggingface_hub.hf_api.get_token", lambda: None)
        (missing,) = namespace_problems("me", HfApi(endpoint=hub.url, token=None))
        assert hub.count("whoami") == 1
    assert "refused" in refused and "401" in refused and wrong not in refused
    assert "no Hugging Face token" in missing
