"""Served roles (synthesizer, executor, planner): started, placed, checked and stopped by the stage
that uses them.

One mechanism for a laptop and a GPU node: the engine is `vllm` (its own environment, GPUs),
`transformers` (apo-planner's own OpenAI-compatible server, `apo_planner.generation.openai_server`: small
models on CPU, structured outputs enforced as vLLM does, vLLM's request fields; the smoke recipe's),
`transformers-serve` (Hugging Face's `transformers serve`: the OpenAI API's fields only, no structured
outputs), or `external` (a server someone else runs at `base_url`). A started server gets its GPUs through
`CUDA_VISIBLE_DEVICES`, is ready only once `/v1/models` lists the expected model id, and is stopped
(its whole process group) when the stage ends, fails or is interrupted. What it printed goes to
`<workdir>/<role>.log`, and its tail is in every error.

A server never outlives its run. On Linux it is bound to the process that started it (the kernel
sends it SIGTERM when that process dies, kill -9 included: `PR_SET_PDEATHSIG`), and a watchdog
(`apo_planner.guard`) stops its whole process group when that process is gone. Each started server is
recorded in `<workdir>/<role>.server.<host>.<pid>.json` (PID, process group, port, role, the process's
start time); a start that finds the record of a server whose run has died (its parent is gone) stops
that server's process group, once it has checked that the PID still is the recorded process. Whatever
else answers on the port is refused, as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import requests
from pydantic import Field, model_validator

from apo_planner.config import StrictConfig
from apo_planner.errors import UserError
from apo_planner.guard import group_alive, guard, release, stop_group

logger = logging.getLogger(__name__)

TRANSFORMERS_SERVE = [sys.executable, "-m", "transformers.cli.transformers", "serve"]
APO_PLANNER_SERVER = [sys.executable, "-m", "apo_planner.generation.openai_server"]
# Engines whose request fields are vLLM's (every sampling field, `structured_outputs`); `transformers-serve`
# takes only the OpenAI API's, and an external server's are whatever its role's `api` says.
VLLM_API_ENGINES = ("vllm", "transformers")
DEFAULT_VLLM = ".venv-vllm/bin/vllm"  # `make vllm-env`: vLLM pins its own torch and transformers
# JSON schemas compile without free whitespace, as in process (xgrammar `any_whitespace=False`): vLLM's
# default lets a served model pad JSON with whitespace up to max_tokens. vLLM 0.33 accepts
# disable_any_whitespace only with the xgrammar or guidance backend, hence the explicit backend (xgrammar
# compiled every BFCL plan grammar under `auto` without a fallback; see docs/vllm.md).
VLLM_STRUCTURED_OUTPUTS = '{"backend": "xgrammar", "disable_any_whitespace": true}'
OWNED_ARGS = ("--revision", "--served-model-name", "--structured-outputs-config")  # set from the recipe's keys


class ServerError(UserError):
    """A server that did not come up, serves another model, or died; the message has its log tail."""


class ServerConfig(StrictConfig):
    """How one served role runs (a recipe's `server:` section)."""

    engine: Literal["vllm", "transformers", "transformers-serve", "external"] = Field(
        "external",
        description="started here: vllm (GPUs), transformers (apo-planner's CPU server: structured outputs enforced "
        "as vLLM does) or transformers-serve (Hugging Face's `transformers serve`: no structured outputs); "
        "external: already running at base_url",
    )
    base_url: str | None = Field(None, description="external only: the OpenAI-compatible /v1 URL")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535, description="0: any free port")
    devices: list[int] = Field(default_factory=list, description="GPU ids (CUDA_VISIBLE_DEVICES); empty: inherit")
    args: list[str] = Field(default_factory=list, description="extra engine arguments, e.g. --tensor-parallel-size 2")
    binary: str | None = Field(None, description=f"engine executable (vllm default: {DEFAULT_VLLM})")
    startup_timeout_s: float = Field(1200.0, gt=0, description="how long loading the model may take")
    check_model_id: bool = Field(True, description="refuse a server whose /v1/models does not list the model")
    batch_invariant: bool = Field(
        False,
        description="vllm: start with VLLM_BATCH_INVARIANT=1, so a seeded request gives the same tokens whatever it "
        "is batched with (bit-reproducible runs, at a throughput cost); off, outputs may depend on the batch",
    )

    @model_validator(mode="after")
    def _external_needs_url(self) -> ServerConfig:
        if self.engine == "external" and not self.base_url:
            raise ValueError("engine external needs base_url (e.g. http://localhost:8000/v1)")
        if self.batch_invariant and self.engine != "vllm":
            raise ValueError("batch_invariant is a setting of the vllm engine (VLLM_BATCH_INVARIANT=1)")
        owned = [a for a in self.args if a.split("=", 1)[0].split(".", 1)[0] in OWNED_ARGS]
        if owned:
            raise ValueError(
                f"args {owned}: apo-planner sets these itself (the role's model and revision, and the JSON "
                "whitespace rule shared with the in-process path)"
            )
        return self

    def executable(self) -> str:
        if self.binary:
            return self.binary
        if self.engine == "vllm":  # `make vllm-env` writes it in the checkout, wherever the command runs
            here, checkout = Path(DEFAULT_VLLM), Path(__file__).resolve().parents[1] / DEFAULT_VLLM
            return str(here if here.exists() or not checkout.exists() else checkout)
        return str(Path(sys.executable).with_name("transformers"))

    def command(self, model: str, served_name: str, port: int, revision: str | None = None) -> list[str]:
        """The engine's command line for `model` (at a Hub `revision`), answering as `served_name`."""
        address = ["--host", self.host, "--port", str(port)]
        pinned = ["--revision", revision] if revision and not Path(model).exists() else []
        if self.engine == "transformers":  # through this interpreter, where apo-planner is installed
            base = [self.binary] if self.binary else APO_PLANNER_SERVER
            return [*base, model, *pinned, "--served-model-name", served_name, *address, *self.args]
        # `transformers serve` through this interpreter: an installed package need not have its scripts on PATH
        base = [self.executable(), "serve"] if self.engine == "vllm" or self.binary else TRANSFORMERS_SERVE
        if self.engine == "vllm":
            shared = ["--structured-outputs-config", VLLM_STRUCTURED_OUTPUTS]
            return [*base, model, *pinned, "--served-model-name", served_name, *address, *shared, *self.args]
        return [*base, model, *address, *self.args]

    def environment(self) -> dict[str, str]:
        """What the engine's process gets beside this process's environment."""
        env = {}
        if self.devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in self.devices)
        if self.engine == "vllm":  # explicit either way: an inherited VLLM_BATCH_INVARIANT must not decide
            env["VLLM_BATCH_INVARIANT"] = "1" if self.batch_invariant else "0"
        return env


def served_engine(engine: str | None, api: str) -> str | None:
    """Whose sampling rules a served role runs under (`Sampling.effective`): vLLM's for vllm, transformers' for
    apo-planner's own server; a server whose engine is unknown: vLLM's when it speaks vLLM's API, else None."""
    if engine in ("vllm", "transformers"):
        return engine
    return "vllm" if api == "vllm" and engine != "transformers-serve" else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, lines: int = 20) -> str:
    if not path.is_file():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(empty log)"


def served_models(base_url: str, timeout_s: float = 5.0) -> list[str] | None:
    """The ids `/v1/models` lists, or None while nothing answers."""
    try:
        response = requests.get(base_url.rstrip("/") + "/models", timeout=timeout_s)
    except requests.RequestException:
        return None
    if response.status_code != 200:
        return None
    try:
        return [m.get("id") for m in response.json().get("data", [])]
    except ValueError:
        return []


def wait_until_ready(
    base_url: str,
    model: str,
    seconds: float,
    *,
    check_model_id: bool,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
) -> None:
    """Until `/v1/models` answers (and lists `model` when checked); fails early if `proc` exits."""
    tail = (lambda: f"\n--- {log} (last lines) ---\n{log_tail(log)}") if log else (lambda: "")
    deadline = time.monotonic() + seconds
    while True:
        models = served_models(base_url)
        if models is not None:
            if not check_model_id or model in models:
                return
            raise ServerError(f"the server at {base_url} serves {models}, not {model!r}; is it the right server?")
        if proc is not None and proc.poll() is not None:
            raise ServerError(f"the server for {model!r} exited with code {proc.returncode}{tail()}")
        if time.monotonic() > deadline:
            raise ServerError(f"no answer from {base_url}/models after {seconds:.0f} s{tail()}")
        time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> None:
    """The whole process group: vLLM starts engine workers of its own, which may outlive the process
    that started them (a crashed server's workers still hold GPU memory)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


# --- a server's lifetime is its run's ----------------------------------------------------------

PR_SET_PDEATHSIG = 1  # linux/prctl.h
DEATH_SIGNAL = signal.SIGTERM  # what a server gets when its run dies: vLLM stops its engine workers on it


def _parent_death_signal() -> Callable[[], None] | None:
    """A `preexec_fn` that has the kernel signal the child when the thread that started it exits (Linux).

    The kernel ties the signal to the *thread* that forked, so servers are started from the thread that
    lives as long as the stage (the main thread, for every stage). The function is built before the
    fork: the child only makes two system calls.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def bind() -> None:
        prctl(PR_SET_PDEATHSIG, int(DEATH_SIGNAL), 0, 0, 0)
        if os.getppid() != parent:  # the run died between fork and prctl: nobody would stop this server
            os._exit(1)

    return bind


def _start_ticks(pid: int) -> int | None:
    """When a process started (clock ticks since boot, from /proc), to tell it from a later one with its PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name in parentheses may hold spaces


def _record_path(workdir: Path, role: str) -> Path:
    return workdir / f"{role}.server.{socket.gethostname()}.{os.getpid()}.json"


def _write_record(path: Path, proc: subprocess.Popen, role: str, port: int, command: list[str]) -> None:
    from apo_planner.artifacts import write_json

    write_json(
        path,
        {
            "role": role,
            "pid": proc.pid,
            "pgid": proc.pid,  # start_new_session: the server leads its own group
            "port": port,
            "start_ticks": _start_ticks(proc.pid),
            "parent_pid": os.getpid(),
            "parent_start_ticks": _start_ticks(os.getpid()),
            "host": socket.gethostname(),
            "command": command,
            "started": time.time(),
        },
    )


def reap_stale_servers(workdir: Path) -> list[str]:
    """Stop the servers recorded in `workdir` whose run has died (this host only); returns what it did.

    A record counts as stale when the process that started the server is gone (or is another process
    now). Its server's group is signalled only when the recorded PID is the recorded process (same start
    time) or when no process has that PID any more (then whatever is left in its group is the server's
    workers: Linux gives no new process a PID that is still a group's id).
    """
    done = []
    host = socket.gethostname()
    for path in sorted(workdir.glob(f"*.server.{host}.*.json")):
        try:
            record = json.loads(path.read_text())
            pid, pgid = int(record["pid"]), int(record["pgid"])
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        if not Path("/proc/self/stat").exists():
            continue  # no /proc: no process can be identified, so none is touched (the port check still refuses)
        parent = int(record.get("parent_pid") or 0)
        if parent and (alive := _start_ticks(parent)) is not None and alive == record.get("parent_start_ticks"):
            continue  # its run is alive (this process, or another one still running): not stale
        ticks = _start_ticks(pid)
        if ticks is not None and ticks != record.get("start_ticks"):
            path.unlink(missing_ok=True)  # the PID is another process now; the server is long gone
            continue
        if group_alive(pgid):
            stop_group(pgid, 15.0)
            what = f"stopped the {record.get('role')} server a killed run left (PID {pid}, port {record.get('port')})"
            logger.info("%s: %s", workdir, what)
            done.append(what)
        path.unlink(missing_ok=True)
    return done


@contextlib.contextmanager
def serve(
    config: ServerConfig,
    model: str | Path,
    workdir: Path,
    role: str,
    served_name: str | None = None,
    revision: str | None = None,
) -> Iterator[str]:
    """A ready server for `model` for the duration of the block; yields its /v1 base URL.

    `served_name` is the id clients send (default: `model` as given); an external server must list it.
    `revision` is the Hub model's commit (`apo_planner.pinning.resolve`; a local folder has none): vLLM serves
    it after the whole snapshot is downloaded into the cache the server reads, so `startup_timeout_s` counts
    loading only.
    """
    model = str(model)
    name = served_name or model
    if config.engine == "external":
        assert config.base_url is not None
        try:
            wait_until_ready(
                config.base_url, name, min(config.startup_timeout_s, 30.0), check_model_id=config.check_model_id
            )
        except ServerError as exc:
            raise ServerError(
                f"{role}: {exc}. Start it with `apo-planner serve {role}` (or `make serve-{role}`), or let the "
                "stage start it: server.engine vllm or transformers"
            ) from None
        yield config.base_url
        return
    executable = config.executable()
    if config.engine == "vllm" and not Path(executable).exists():
        raise ServerError(f"{role}: vLLM not found at {executable}; run `make vllm-env` (CUDA machine) or set binary")
    workdir.mkdir(parents=True, exist_ok=True)
    reap_stale_servers(workdir)
    env = dict(os.environ) | config.environment()
    if config.engine == "transformers-serve":  # its /v1/models lists the HF cache, which must exist
        hf_home = workdir / f"{role}-hf_home"
        (hf_home / "hub").mkdir(parents=True, exist_ok=True)
        env["HF_HOME"] = str(hf_home)
        if Path(model).is_dir():
            env["HF_HUB_OFFLINE"] = "1"  # a local model needs no Hub, and an empty cache must not go looking
    port = config.port or free_port()
    log = workdir / f"{role}.log"
    base_url = f"http://{config.host}:{port}/v1"
    if served_models(base_url, timeout_s=2.0) is not None:
        raise ServerError(f"{role}: something already answers at {base_url}; stop it or pick another port")
    command = config.command(model, name, port, revision)
    if config.engine == "vllm" and revision and not Path(model).exists():
        from apo_planner.pinning import download

        download(model, revision)  # GBs: before the startup clock, not inside startup_timeout_s
    if threading.current_thread() is not threading.main_thread():
        logger.debug("%s server started from a thread: it is stopped when that thread ends", role)
    record = _record_path(workdir, role)
    with log.open("w") as out:
        out.write(f"# apo-planner {role} server at {base_url}: {' '.join(command)}\n")
        out.flush()
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopping it stops the engine's workers too
            preexec_fn=_parent_death_signal(),
        )
    try:
        guard(proc.pid)  # its engine workers too, when this process is killed
        _write_record(record, proc, role, port, command)
        # `transformers serve` loads any local path on request; its /v1/models lists the cache instead
        check = config.check_model_id and config.engine in VLLM_API_ENGINES
        wait_until_ready(base_url, name, config.startup_timeout_s, check_model_id=check, proc=proc, log=log)
        yield base_url
    finally:
        _stop(proc)
        release(proc.pid)
        record.unlink(missing_ok=True)


@contextlib.contextmanager
def transformers_server(model: str | Path, workdir: Path, timeout_s: float = 180) -> Iterator[str]:
    """Hugging Face's `transformers serve` on a free loopback port for a local model (tests and benchmarks that
    need a server that is not the project's own)."""
    config = ServerConfig(engine="transformers-serve", port=0, startup_timeout_s=timeout_s)
    with serve(config, model, workdir, "transformers-serve") as base_url:
        yield base_url
