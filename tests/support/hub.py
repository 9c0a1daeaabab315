"""A loopback stand-in for the Hugging Face Hub API, for push tests (`HF_ENDPOINT=stub.url`).

It speaks the subset of the Hub's HTTP API that `huggingface_hub.HfApi` uses to create a repo,
upload a folder (preupload, NDJSON commit with regular base64 files, deletions), list its files
and refs, read repo info and tag a commit. It checks the bearer token, keeps every commit's
snapshot so a test can read a repo at a tag, and injects failures on demand. What it does not
speak (LFS/Xet transfers of large files) answers 404 and is recorded in `unknown`, so a test
fails loudly if the client takes a path the stub does not model.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from huggingface_hub.utils.sha import git_hash

from tests.support.loopback import LoopbackServer

_REPO = "/api/{kind:models|datasets|spaces}/{ns}/{name}"


@dataclass
class HubRepo:
    repo_type: str
    private: bool
    commits: list[str] = field(default_factory=list)
    snapshots: dict[str, dict[str, bytes]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def head(self) -> str:
        return self.commits[-1]

    def files(self, revision: str = "main") -> dict[str, bytes]:
        oid = self.head if revision == "main" else self.tags.get(revision, revision)
        return self.snapshots[oid]

    def commit(self, files: dict[str, bytes], summary: str) -> str:
        oid = hashlib.sha1(f"{len(self.commits)}:{summary}".encode() + repr(sorted(files.items())).encode()).hexdigest()
        self.commits.append(oid)
        self.snapshots[oid] = files
        return oid


@dataclass
class HubStub(LoopbackServer):
    """`faults` maps a call kind (`create`, `preupload`, `commit`, `tag`, ...) or `"<kind> <repo_id>"`
    to the statuses its next calls answer instead of succeeding (consumed first to last); a 429
    carries `Retry-After: retry_after` when that is set. Repos are keyed `(repo_type, repo_id)`:
    like the Hub, a model and a dataset may share an id."""

    token: str | None = None
    faults: dict[str, list[int]] = field(default_factory=dict)
    retry_after: str | None = None
    repos: dict[tuple[str, str], HubRepo] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    def repo(self, repo_id: str, repo_type: str = "model") -> HubRepo:
        return self.repos[(repo_type, repo_id)]

    def count(self, kind: str, repo_id: str | None = None) -> int:
        return sum(1 for k, r in self.calls if k == kind and (repo_id is None or r == repo_id))

    def routes(self, app: Any) -> None:
        from aiohttp import web

        def error(status: int, message: str) -> web.Response:
            headers = {"X-Error-Message": message}
            if status == 429 and self.retry_after is not None:
                headers["Retry-After"] = self.retry_after
            return web.json_response({"error": message}, status=status, headers=headers)

        def handler(kind: str, run):
            async def handle(request: web.Request) -> web.Response:
                info = request.match_info
                repo_id = f"{info['ns']}/{info['name']}" if "ns" in info else ""
                repo_type = info["kind"][:-1] if "kind" in info else ""
                if kind == "create":
                    body = await request.json()  # aiohttp caches the body for the route to read again
                    repo_id = "/".join(filter(None, (body.get("organization"), body["name"])))
                    repo_type = body.get("type") or "model"
                self.calls.append((kind, repo_id))
                if self.token is not None and request.headers.get("authorization") != f"Bearer {self.token}":
                    return error(401, "Invalid credentials in Authorization header")
                for key in (f"{kind} {repo_id}", kind):
                    if self.faults.get(key):
                        return error(self.faults[key].pop(0), f"injected failure of {kind}")
                if repo_id and kind != "create":
                    repo = self.repos.get((repo_type, repo_id))
                    if repo is None:
                        return web.json_response(
                            {"error": "Repository not found"}, status=404, headers={"X-Error-Code": "RepoNotFound"}
                        )
                    try:
                        return await run(request, repo_id, repo)
                    except KeyError as exc:
                        return error(404, f"Invalid rev id: {exc.args[0]}")
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

        async def preupload(request: web.Request, _: str, repo: HubRepo) -> web.Response:
            files = repo.files()
            answer = [
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_hash(files[f["path"]]) if f["path"] in files else None,
                }
                for f in (await request.json())["files"]
            ]
            return web.json_response({"files": answer, "commitOid": repo.head})

        async def commit(request: web.Request, repo_id: str, repo: HubRepo) -> web.Response:
            lines = [json.loads(line) for line in (await request.read()).splitlines() if line.strip()]
            files = dict(repo.files())
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
            oid = repo.commit(files, summary)
            prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
            return web.json_response(
                {"success": True, "commitOid": oid, "commitUrl": f"{self.url}/{prefix}{repo_id}/commit/{oid}"}
            )

        async def tag(request: web.Request, _: str, repo: HubRepo) -> web.Response:
            body = await request.json()
            revision = request.match_info["rev"]
            target = repo.head if revision == "main" else revision
            if target not in repo.snapshots:
                return error(404, f"Invalid rev id: {revision}")
            if body["tag"] in repo.tags:
                return error(409, "Tag already exists")
            repo.tags[body["tag"]] = target
            return web.json_response({})

        async def repo_info(request: web.Request, repo_id: str, repo: HubRepo) -> web.Response:
            revision = request.match_info.get("rev", "main")
            files = repo.files(revision)
            sha = repo.head if revision == "main" else repo.tags.get(revision, revision)
            return web.json_response(
                {"id": repo_id, "sha": sha, "private": repo.private, "siblings": [{"rfilename": p} for p in files]}
            )

        async def tree(request: web.Request, _: str, repo: HubRepo) -> web.Response:
            files = repo.files(request.match_info["rev"])
            return web.json_response(
                [{"type": "file", "path": p, "size": len(c), "oid": git_hash(c)} for p, c in sorted(files.items())]
            )

        async def refs(request: web.Request, _: str, repo: HubRepo) -> web.Response:
            def ref(name: str, kind: str, oid: str) -> dict[str, str]:
                return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": oid}

            return web.json_response(
                {
                    "branches": [ref("main", "heads", repo.head)],
                    "converts": [],
                    "tags": [ref(t, "tags", oid) for t, oid in repo.tags.items()],
                    "pullRequests": [],
                }
            )

        async def unknown(request: web.Request) -> web.Response:
            self.unknown.append(f"{request.method} {request.path}")
            return error(404, f"the Hub stub does not serve {request.method} {request.path}")

        app.router.add_post("/api/repos/create", handler("create", create))
        app.router.add_post("/api/validate-yaml", handler("validate-yaml", validate_yaml))
        app.router.add_post(_REPO + "/preupload/{rev}", handler("preupload", preupload))
        app.router.add_post(_REPO + "/commit/{rev}", handler("commit", commit))
        app.router.add_post(_REPO + "/tag/{rev}", handler("tag", tag))
        app.router.add_get(_REPO, handler("info", repo_info))
        app.router.add_get(_REPO + "/revision/{rev}", handler("info", repo_info))
        app.router.add_get(_REPO + "/tree/{rev}", handler("tree", tree))
        app.router.add_get(_REPO + "/refs", handler("refs", refs))
        app.router.add_route("*", "/{tail:.*}", unknown)
