"""A loopback stand-in for the Hugging Face Hub API (`HF_ENDPOINT=stub.url`), for push and download tests.

Uploads: the subset of the Hub's HTTP API that `huggingface_hub.HfApi` uses to create a repo, upload
a folder (preupload, NDJSON commit with regular base64 files, deletions), list its files and refs,
read repo info and tag a commit. Downloads: what `huggingface_hub`, `datasets`, `transformers` and
`peft` call to load a repo by id and revision: repo info by revision (sha, siblings, card data),
tree listings (per folder or recursive), paths-info, and `resolve/{revision}/{path}` (HEAD and
GET, with the `ETag`, `X-Repo-Commit` and `Content-Length` headers the client checks, and byte
ranges), for models and datasets, at a branch, a tag or a commit. `whoami-v2` answers with the
identity the stub is given, so a preflight check of the token's namespaces is testable.

It checks the bearer token (a public repo can also be read anonymously, as on the Hub), keeps every
commit's snapshot so a test can read a repo at a tag, and injects failures on demand. What it does
not speak (LFS/Xet transfers of large files) answers 404 and is recorded in `unknown`, so a test
fails loudly if a client takes a path the stub does not model. Errors carry the Hub's
`X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`), which the clients turn into
their typed exceptions (transformers skips an optional file on `EntryNotFound`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import yaml
from huggingface_hub.utils.sha import git_hash

from tests.support.loopback import LoopbackServer

_KINDS = "{kind:models|datasets|spaces}"
_REPO = "/api/" + _KINDS + "/{ns}/{name}"
# what an anonymous caller may do (on a public repo, for the repo routes)
_READS = {"info", "tree", "paths-info", "resolve", "refs", "agent-harnesses"}


@dataclass
class Commit:
    title: str
    date: str


@dataclass
class HubRepo:
    repo_type: str
    private: bool
    commits: list[str] = field(default_factory=list)
    snapshots: dict[str, dict[str, bytes]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    log: dict[str, Commit] = field(default_factory=dict)

    @property
    def head(self) -> str:
        return self.branches["main"]

    def sha(self, revision: str = "main") -> str:
        """The commit a branch, a tag or a commit id names; KeyError(revision) if none."""
        revision = unquote(revision)
        for refs in (self.branches, self.tags):
            if revision in refs:
                return refs[revision]
        if revision in self.snapshots:
            return revision
        raise KeyError(revision)

    def files(self, revision: str = "main") -> dict[str, bytes]:
        return self.snapshots[self.sha(revision)]

    def commit(self, files: dict[str, bytes], summary: str, branch: str = "main") -> str:
        oid = hashlib.sha1(f"{len(self.commits)}:{summary}".encode() + repr(sorted(files.items())).encode()).hexdigest()
        self.commits.append(oid)
        self.snapshots[oid] = files
        self.branches[branch] = oid
        self.log[oid] = Commit(summary, datetime.fromtimestamp(time.time(), UTC).isoformat().replace("+00:00", "Z"))
        return oid

    def card_data(self, revision: str = "main") -> dict[str, Any] | None:
        """The README's YAML front matter, as the Hub serves it in `cardData`."""
        text = self.files(revision).get("README.md", b"").decode()
        if not text.startswith("---\n"):
            return None
        meta = yaml.safe_load(text[4:].split("\n---\n", 1)[0])
        return meta if isinstance(meta, dict) else None

    def entries(self, revision: str, folder: str = "", recursive: bool = False) -> list[dict[str, Any]] | None:
        """Tree entries under `folder` (files and sub-folders, as the Hub lists them); None if no such folder."""
        files = self.files(revision)
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in files):
            return None
        out: dict[str, dict[str, Any]] = {}
        for path in sorted(p for p in files if p.startswith(prefix)):
            rest = path[len(prefix) :].split("/")
            folders = [prefix + "/".join(rest[:depth]) for depth in range(1, len(rest))]
            for folder_path in folders if recursive else folders[:1]:
                out.setdefault(folder_path, self.entry(revision, folder_path))
            if recursive or len(rest) == 1:
                out[path] = self.entry(revision, path)
        return list(out.values())

    def entry(self, revision: str, path: str, expand: bool = False) -> dict[str, Any]:
        """One path's tree entry: a file (git blob id, size) or a folder (a hash of what it holds)."""
        files = self.files(revision)
        if path in files:
            entry = {"type": "file", "oid": git_hash(files[path]), "size": len(files[path]), "path": path}
        else:
            inside = sorted((p, git_hash(c)) for p, c in files.items() if p.startswith(path + "/"))
            entry = {"type": "directory", "oid": hashlib.sha1(repr(inside).encode()).hexdigest(), "path": path}
        if expand:  # the Hub's "last commit" is the one that touched the path; the revision's commit stands in
            sha = self.sha(revision)
            entry["lastCommit"] = {"id": sha, "title": self.log[sha].title, "date": self.log[sha].date}
        return entry


@dataclass
class HubStub(LoopbackServer):
    """`faults` maps a call kind (`create`, `preupload`, `commit`, `tag`, `resolve`, ...) or
    `"<kind> <repo_id>"` to the statuses its next calls answer instead of succeeding (consumed first
    to last); a 429 carries `Retry-After: retry_after` when that is set. Repos are keyed
    `(repo_type, repo_id)`: like the Hub, a model and a dataset may share an id. `user`, `orgs`
    (organisation -> role in it) and `token_role` (`read`, `write` or `fineGrained`, with
    `fine_grained` as the Hub returns it) are what `whoami-v2` says about the token."""

    token: str | None = None
    faults: dict[str, list[int]] = field(default_factory=dict)
    retry_after: str | None = None
    repos: dict[tuple[str, str], HubRepo] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    user: str = "me"
    orgs: dict[str, str] = field(default_factory=dict)
    token_role: str = "write"
    fine_grained: dict[str, Any] | None = None

    def repo(self, repo_id: str, repo_type: str = "model") -> HubRepo:
        return self.repos[(repo_type, repo_id)]

    def count(self, kind: str, repo_id: str | None = None) -> int:
        return sum(1 for k, r in self.calls if k == kind and (repo_id is None or r == repo_id))

    def whoami(self) -> dict[str, Any]:
        """The `/api/whoami-v2` answer for the stub's token (the fields clients read)."""
        access = {"displayName": "stub-token", "role": self.token_role}
        if self.fine_grained is not None:
            access["fineGrained"] = self.fine_grained
        return {
            "type": "user",
            "name": self.user,
            "fullname": self.user,
            "orgs": [{"type": "org", "name": name, "roleInOrg": role} for name, role in self.orgs.items()],
            "auth": {"type": "access_token", "accessToken": access},
        }

    def routes(self, app: Any) -> None:
        from aiohttp import web

        def error(status: int, message: str, code: str | None = None) -> web.Response:
            headers = {"X-Error-Message": message}
            if code:
                headers["X-Error-Code"] = code
            if status == 429 and self.retry_after is not None:
                headers["Retry-After"] = self.retry_after
            return web.json_response({"error": message}, status=status, headers=headers)

        def handler(kind: str, run):
            async def handle(request: web.Request) -> web.Response:
                info = request.match_info
                repo_id = f"{info['ns']}/{info['name']}" if "ns" in info else ""
                repo_type = info["kind"][:-1] if "kind" in info else "model"
                if kind == "create":
                    body = await request.json()  # aiohttp caches the body for the route to read again
                    repo_id = "/".join(filter(None, (body.get("organization"), body["name"])))
                    repo_type = body.get("type") or "model"
                self.calls.append((kind, repo_id))
                auth = request.headers.get("authorization")
                anonymous_read = auth is None and kind in _READS
                if self.token is not None and auth != f"Bearer {self.token}" and not anonymous_read:
                    return error(401, "Invalid credentials in Authorization header")
                for key in (f"{kind} {repo_id}", kind):
                    if self.faults.get(key):
                        return error(self.faults[key].pop(0), f"injected failure of {kind}")
                if repo_id and kind != "create":
                    repo = self.repos.get((repo_type, repo_id))
                    if repo is None or (anonymous_read and repo.private and self.token is not None):
                        return error(404 if repo is None else 401, "Repository not found", "RepoNotFound")
                    try:
                        return await run(request, repo_id, repo)
                    except KeyError as exc:
                        return error(404, f"Invalid rev id: {exc.args[0]}", "RevisionNotFound")
                return await run(request, (repo_type, repo_id), None)

            return handle

        async def create(request: web.Request, key: tuple[str, str], _: None) -> web.Response:
            repo_type, repo_id = key
            body = await request.json()
            url = f"{self.url}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
            if key in self.repos:
                return web.json_response({"error": "You already created this repo", "url": url}, status=409)
            repo = HubRepo(repo_type, body.get("visibility") == "private")
            repo.commit({".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}, "initial commit")
            self.repos[key] = repo
            return web.json_response({"url": url, "name": repo_id, "id": repo_id})

        async def validate_yaml(request: web.Request, _: tuple[str, str], __: None) -> web.Response:
            await request.json()
            return web.json_response({"errors": [], "warnings": []})

        async def agent_harnesses(request: web.Request, _: tuple[str, str], __: None) -> web.Response:
            return web.json_response({"standardEnvVars": [], "harnesses": {}})  # the `hf` CLI asks; no agent known

        async def whoami(request: web.Request, _: tuple[str, str], __: None) -> web.Response:
            if request.headers.get("authorization") is None:
                return error(401, "Invalid credentials in Authorization header")
            return web.json_response(self.whoami())

        async def preupload(request: web.Request, _: str, repo: HubRepo) -> web.Response:
            files = repo.files(request.match_info["rev"])
            answer = [
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_hash(files[f["path"]]) if f["path"] in files else None,
                }
                for f in (await request.json())["files"]
            ]
            return web.json_response({"files": answer, "commitOid": repo.sha(request.match_info["rev"])})

        async def commit(request: web.Request, repo_id: str, repo: HubRepo) -> web.Response:
            branch = unquote(request.match_info["rev"])
            if branch not in repo.branches:
                return error(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            lines = [json.loads(line) for line in (await request.read()).splitlines() if line.strip()]
            files = dict(repo.files(branch))
            summary = ""
            for item in lines:
                key, value = item["key"], item["value"]
                if key == "header":
                    summary = value["summary"]
                elif key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    files = {p: c for p, c in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
                else:
                    return error(400, f"the stub does not model commit items of kind {key!r}")
            oid = repo.commit(files, summary, branch)
            prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
            return web.json_response(
                {"success": True, "commitOid": oid, "commitUrl": f"{self.url}/{prefix}{repo_id}/commit/{oid}"}
            )

        async def tag(request: web.Request, _: str, repo: HubRepo) -> web.Response:
            body = await request.json()
            target = repo.sha(request.match_info["rev"])
            if body["tag"] in repo.tags:
                return error(409, "Tag already exists")
            repo.tags[body["tag"]] = target
            return web.json_response({})

        async def branch(request: web.Request, _: str, repo: HubRepo) -> web.Response:
            body = await request.json() if request.can_read_body else {}
            name = unquote(request.match_info["branch"])
            if name in repo.branches:
                return error(409, "Branch already exists")
            repo.branches[name] = repo.sha(body.get("startingPoint") or "main")
            return web.json_response({})

        async def repo_info(request: web.Request, repo_id: str, repo: HubRepo) -> web.Response:
            revision = request.match_info.get("rev", "main")
            sha = repo.sha(revision)
            files = repo.files(sha)
            card = repo.card_data(sha)
            metadata = request.query.get("blobs") == "true"
            siblings = [
                {"rfilename": p, **({"size": len(c), "blobId": git_hash(c)} if metadata else {})}
                for p, c in sorted(files.items())
            ]
            return web.json_response(
                {
                    "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                    "id": repo_id,
                    "author": repo_id.split("/")[0],
                    "sha": sha,
                    "lastModified": repo.log[sha].date,
                    "createdAt": repo.log[repo.commits[0]].date,
                    "private": repo.private,
                    "disabled": False,
                    "gated": False,
                    "downloads": 0,
                    "likes": 0,
                    "tags": list((card or {}).get("tags") or []),
                    "cardData": card,
                    "siblings": siblings,
                    "usedStorage": sum(len(c) for c in files.values()),
                }
            )

        async def tree(request: web.Request, _: str, repo: HubRepo) -> web.Response:
            revision = request.match_info["rev"]
            folder = unquote(request.match_info.get("path", ""))
            recursive = request.query.get("recursive", "false").lower() == "true"
            expand = request.query.get("expand", "false").lower() == "true"
            entries = repo.entries(revision, folder, recursive)
            if entries is None:
                return error(404, f"Entry not found: {folder}", "EntryNotFound")
            if expand:
                entries = [repo.entry(revision, e["path"], expand=True) for e in entries]
            return web.json_response(entries)

        async def paths_info(request: web.Request, _: str, repo: HubRepo) -> web.Response:
            revision = request.match_info["rev"]
            form = await request.post()
            expand = str(form.get("expand", "false")).lower() == "true"
            files = repo.files(revision)
            found = [
                repo.entry(revision, path, expand)
                for path in (str(p).strip("/") for p in form.getall("paths", []))
                if path in files or any(p.startswith(path + "/") for p in files)
            ]
            return web.json_response(found)

        async def refs(request: web.Request, _: str, repo: HubRepo) -> web.Response:
            def ref(name: str, kind: str, oid: str) -> dict[str, str]:
                return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": oid}

            return web.json_response(
                {
                    "branches": [ref(b, "heads", oid) for b, oid in repo.branches.items()],
                    "converts": [],
                    "tags": [ref(t, "tags", oid) for t, oid in repo.tags.items()],
                    "pullRequests": [],
                }
            )

        async def resolve(request: web.Request, _: str, repo: HubRepo) -> web.Response:
            sha = repo.sha(request.match_info["rev"])
            path = unquote(request.match_info["path"])
            content = repo.snapshots[sha].get(path)
            if content is None:
                return error(404, f"Entry not found: {path}", "EntryNotFound")
            headers = {
                "ETag": f'"{git_hash(content)}"',
                "X-Repo-Commit": sha,
                "Accept-Ranges": "bytes",
                "Content-Type": "application/octet-stream",
            }
            span = _byte_range(request.headers.get("Range"), len(content))
            if span is None:
                return web.Response(body=content, headers=headers)
            start, end = span
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            return web.Response(status=206, body=content[start : end + 1], headers=headers)

        async def unknown(request: web.Request) -> web.Response:
            self.unknown.append(f"{request.method} {request.path}")
            return error(404, f"the Hub stub does not serve {request.method} {request.path}")

        app.router.add_post("/api/repos/create", handler("create", create))
        app.router.add_post("/api/validate-yaml", handler("validate-yaml", validate_yaml))
        app.router.add_get("/api/whoami-v2", handler("whoami", whoami))
        app.router.add_get("/api/agent-harnesses", handler("agent-harnesses", agent_harnesses))
        app.router.add_post(_REPO + "/preupload/{rev}", handler("preupload", preupload))
        app.router.add_post(_REPO + "/commit/{rev}", handler("commit", commit))
        app.router.add_post(_REPO + "/tag/{rev}", handler("tag", tag))
        app.router.add_post(_REPO + "/branch/{branch}", handler("branch", branch))
        app.router.add_get(_REPO, handler("info", repo_info))
        app.router.add_get(_REPO + "/revision/{rev}", handler("info", repo_info))
        app.router.add_get(_REPO + "/tree/{rev}", handler("tree", tree))
        app.router.add_get(_REPO + "/tree/{rev}/{path:.+}", handler("tree", tree))
        app.router.add_post(_REPO + "/paths-info/{rev}", handler("paths-info", paths_info))
        app.router.add_get(_REPO + "/refs", handler("refs", refs))
        # file downloads: models at /{id}/resolve/..., datasets and spaces under their kind's prefix
        app.router.add_get("/{kind:datasets|spaces}/{ns}/{name}/resolve/{rev}/{path:.+}", handler("resolve", resolve))
        app.router.add_get("/{ns}/{name}/resolve/{rev}/{path:.+}", handler("resolve", resolve))
        app.router.add_route("*", "/{tail:.*}", unknown)


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `Range: bytes=a-b` / `a-` / `-n` request; None for the whole file."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes=") :].partition("-")
    if not first:
        return max(0, size - int(last)), size - 1
    return int(first), min(int(last), size - 1) if last else size - 1
