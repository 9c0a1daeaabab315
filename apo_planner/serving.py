"""`transformers serve` as a managed subprocess: the real OpenAI-compatible server used for small
CPU runs (the evaluation's tiny executor), tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float, proc: subprocess.Popen | None = None) -> None:
    """Until `url` answers 200; fails early if `proc` exits."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        time.sleep(0.5)
    raise RuntimeError(f"no answer from {url} after {seconds:.0f} s")


@contextlib.contextmanager
def transformers_server(model: str | Path, workdir: Path, timeout_s: float = 180) -> Iterator[str]:
    """Serve `model` with `transformers serve` on a free loopback port; yields the /v1 base URL.
    Logs go to `workdir/server.log`; its HF_HOME is `workdir/hf_home` (with the `hub` folder that
    `/v1/models` needs)."""
    workdir.mkdir(parents=True, exist_ok=True)
    hf_home = workdir / "hf_home"
    (hf_home / "hub").mkdir(parents=True, exist_ok=True)
    port = free_port()
    cli = Path(sys.executable).with_name("transformers")
    with (workdir / "server.log").open("w") as log:
        proc = subprocess.Popen(
            [str(cli), "serve", str(model), "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base_url = f"http://127.0.0.1:{port}/v1"
            wait_for(base_url + "/models", timeout_s, proc)
            yield base_url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
