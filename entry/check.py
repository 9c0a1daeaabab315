"""`apo-planner check`: what would fail hours into a release, found in seconds, all at once.

Each check returns the problems it found, one line each, naming the recipe key and the fix; none
downloads a model or a dataset, and none waits on a network that is not there (offline mode is
reported, not hit). `release` runs the same checks before its first stage.
"""

from __future__ import annotations

import importlib.util
import math
import re
import shutil
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from apo_planner.entry.recipe import Recipe
from apo_planner.errors import UserError

PROBE_ROWS = 64  # source rows read and abstracted by the probe


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was measured or could not be, for the reader

    @property
    def ok(self) -> bool:
        return not self.problems


def _offline() -> bool:
    from huggingface_hub import constants

    return constants.is_offline_mode()


def _is_local(path_or_id: str) -> bool:
    return Path(path_or_id).exists()


def check_trainer(recipe: Recipe, report: CheckReport) -> None:
    from apo_planner.training.apo import check_config

    try:
        check_config(recipe.train)
    except (UserError, ValueError) as exc:
        report.problems.append(" ".join(str(exc).split()))


def check_eval(recipe: Recipe, report: CheckReport) -> None:
    """The eval stage's categories against its benchmark's (the release meets them after build, train and
    merge)."""
    from apo_planner.benchmarks import BENCHMARKS

    bench = BENCHMARKS.get(recipe.eval.benchmark)
    if importlib.util.find_spec(bench.module) is None:
        report.notes.append(
            f"eval.categories: not checked ({bench.module} is not installed: the '{bench.extra}' extra)"
        )
        return
    try:
        bench.resolve(recipe.eval.categories)
    except UserError as exc:
        report.problems.append(f"eval.categories {recipe.eval.categories}: {' '.join(str(exc).split())}"[:600])


def check_push(recipe: Recipe, report: CheckReport) -> None:
    from huggingface_hub import get_token

    offline, token = _offline(), get_token()
    if offline:
        report.problems.append("push: offline mode (HF_HUB_OFFLINE) is set, so the Hub cannot be reached; unset it")
    if not token:
        report.problems.append("push: no Hugging Face token; set HF_TOKEN to a write token or run `hf auth login`")
    if offline or not token:
        return
    from huggingface_hub import HfApi

    from apo_planner.cards.hub import namespace_problems

    api = HfApi()  # one client, so whoami is asked once for all namespaces
    for namespace in recipe.release.namespaces():
        report.problems.extend(f"push: {p}" for p in namespace_problems(namespace, api))


def check_source(recipe: Recipe, report: CheckReport) -> None:
    """Read and abstract the first rows the way the build will, and measure their prompts in tokens."""
    from apo_planner.builders.build import build
    from apo_planner.builders.errors import NoPairs

    b = recipe.build
    if not _is_local(b.source) and not any(ch in b.source for ch in "*?[") and _offline():
        report.problems.append(
            f"build.source: {b.source} is a Hub dataset and the Hub is offline (HF_HUB_OFFLINE); "
            "unset it or point build.source at local files"
        )
        return
    probe = b.model_copy(
        update={
            "limit": PROBE_ROWS,
            "synthesizer": "rule",
            "decontamination": b.decontamination.model_copy(update={"enabled": False}),
        }
    )
    with tempfile.TemporaryDirectory(prefix="apo-check-") as tmp:
        probe = probe.model_copy(update={"output": str(Path(tmp) / "ds")})
        try:
            stats = build(probe).stats
        except NoPairs as exc:  # the probe's few rows may all be dropped where the whole source is fine
            stats = exc.stats
        except Exception as exc:  # whatever the build would fail on, said in one line
            report.problems.append(f"build.source: {b.source}: {' '.join(str(exc).split())}"[:400])
            return
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(stats.get("dropped", {}).items())) or "none"
        per_format = stats.get("formats") or {}
        mixed = f" ({', '.join(f'{k} {v}' for k, v in per_format.items())})" if len(per_format) > 1 else ""
        report.notes.append(
            f"source: {stats.get('records_read')} rows probed, format {stats.get('format')}{mixed}, "
            f"{stats.get('trajectories')} trajectories, dropped: {dropped}"
        )
        if b.format != "auto":
            _check_forced_format(b.source, b.format, Path(tmp), report)
        if not stats.get("trajectories"):
            report.problems.append(f"build.source: none of the first {PROBE_ROWS} rows is usable (dropped: {dropped})")
            return
        if stats.get("pairs"):
            _check_prompt_lengths(recipe, Path(tmp) / "ds", report)


def _check_forced_format(source: str, forced: str, work_dir: Path, report: CheckReport) -> None:
    """A forced `build.format` that the first rows' content contradicts (every row would be misread)."""
    from apo_planner.builders.errors import SourceError
    from apo_planner.builders.sources import open_source

    try:
        detected = open_source(source, "auto", limit=PROBE_ROWS, work_dir=work_dir / "sniff").detection
    except SourceError:
        return  # nothing claims the rows: the probe's drops already say what the forced reader made of them
    found = dict(detected.found)
    if forced not in found:
        report.problems.append(
            f"build.format: {forced}, but the first rows look like {', '.join(found)} "
            f"(`apo-planner formats`); set build.format=auto or the format the rows are in"
        )


def _check_prompt_lengths(recipe: Recipe, dataset: Path, report: CheckReport) -> None:
    t = recipe.train
    if not _is_local(t.base_model) and t.tiny_model:
        report.notes.append("prompt lengths: the tiny base model is made by the release; not measured")
        return
    try:
        from transformers import AutoTokenizer

        from apo_planner.dataset import load_preference_dataset
        from apo_planner.training.apo import pair_lengths

        revision = None if _is_local(t.base_model) else t.base_revision
        tokenizer = AutoTokenizer.from_pretrained(t.base_model, revision=revision)
    except Exception as exc:
        hint = f"download it first (`hf download {t.base_model}`)" if _offline() else "check the id and revision"
        report.problems.append(f"train.base_model: tokenizer of {t.base_model} cannot be loaded ({hint}): {exc}"[:400])
        return
    pairs = load_preference_dataset(str(dataset))
    lengths = sorted(n for part in pairs.values() for n in pair_lengths(part, tokenizer))
    if not lengths:
        return
    p50, p95 = lengths[len(lengths) // 2], lengths[min(len(lengths) - 1, math.ceil(0.95 * len(lengths)) - 1)]
    over = sum(n > t.max_length for n in lengths) / len(lengths)
    report.notes.append(
        f"pair lengths (tokens, {len(lengths)} probe pairs): p50 {p50}, p95 {p95}, max {lengths[-1]}, "
        f"mean {statistics.fmean(lengths):.0f}; train.max_length {t.max_length}"
    )
    if t.overlong == "error" and over > 0:  # training stops at the first pair that does not fit
        report.problems.append(
            f"train.max_length={t.max_length}: {over:.0%} of the probe's pairs are longer (max {lengths[-1]} "
            "tokens) and train.overlong is error; raise max_length or set train.overlong=drop"
        )
    elif over > t.max_overlong_fraction:
        report.problems.append(
            f"train.max_length={t.max_length}: {over:.0%} of the probe's pairs are longer "
            f"(p95 {p95} tokens), above train.max_overlong_fraction={t.max_overlong_fraction}; raise max_length"
        )


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


# The oldest NVIDIA driver each CUDA major release runs on (Linux; NVIDIA's CUDA compatibility table).
MIN_DRIVER = {13: 580, 12: 525, 11: 450}


def nvidia_driver() -> str | None:
    """The driver version nvidia-smi reports (None: no nvidia-smi, or it cannot talk to a driver)."""
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines() if out.returncode == 0 else []
    return lines[0].strip() if lines else None


def torch_cuda(vllm_executable: str) -> str | None:
    """The CUDA version the vLLM environment's torch was built for, read from its `torch/version.py` (no
    import: that environment's torch is GBs and needs the driver this check is about)."""
    venv = Path(vllm_executable).resolve().parent.parent
    for version_file in sorted(venv.glob("lib/python3*/site-packages/torch/version.py")):
        match = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([\d.]+)['\"]", version_file.read_text(), re.M)
        if match:
            return match.group(1)
    return None


def driver_problem(driver: str | None, cuda: str | None) -> str | None:
    """Why the driver cannot run that CUDA build, or None (unknown versions are not a problem here)."""
    if not driver or not cuda:
        return None
    need = MIN_DRIVER.get(int(cuda.split(".")[0]))
    have = int(driver.split(".")[0]) if driver.split(".")[0].isdigit() else None
    if need is None or have is None or have >= need:
        return None
    return (
        f"the vLLM environment's torch is built for CUDA {cuda}, which needs NVIDIA driver {need} or newer, and "
        f"nvidia-smi reports driver {driver}: update the driver, or install a vLLM build for the CUDA this "
        "driver runs (docs/vllm.md)"
    )


def check_devices(
    recipe: Recipe,
    report: CheckReport,
    gpus: Callable[[], int] | None = None,
    driver: Callable[[], str | None] = nvidia_driver,
    cuda: Callable[[str], str | None] = torch_cuda,
) -> None:
    """GPUs the recipe assigns exist, each engine is installed and its CUDA build runs on this driver, and roles
    running together do not share GPUs."""
    visible = (gpus or _gpu_count)()
    servers = {}
    llm_server = getattr(recipe.build.llm, "server", None)
    if recipe.build.synthesizer == "llm" and llm_server is not None:
        servers["build.llm.server"] = llm_server  # runs alone, during the build
    servers["eval.executor.server"] = recipe.eval.executor.server
    planner_server = getattr(recipe.eval.planner, "server", None)
    if planner_server is not None:
        servers["eval.planner.server"] = planner_server
    driver_checked: set[str] = set()
    for key, server in servers.items():
        if server.engine == "vllm":
            executable = server.executable()
            if not Path(executable).exists():
                report.problems.append(
                    f"{key}: engine vllm but {executable} does not exist; run `make vllm-env` "
                    "(a CUDA machine) or set its binary"
                )
            elif executable not in driver_checked:
                driver_checked.add(executable)
                problem = driver_problem(driver(), cuda(executable))
                if problem:
                    report.problems.append(f"{key}: {problem}")
            if visible == 0:
                report.problems.append(f"{key}: engine vllm needs a GPU and none is visible")
        wanted = [d for d in server.devices if d >= visible]
        if wanted and visible:
            report.problems.append(f"{key}.devices {server.devices}: only GPUs 0..{visible - 1} are visible")
    shared = set(recipe.eval.executor.server.devices) & set(
        servers["eval.planner.server"].devices if "eval.planner.server" in servers else []
    )
    if shared:
        report.problems.append(
            f"eval.executor.server and eval.planner.server both use GPUs {sorted(shared)} while they run together"
        )
    t = recipe.train
    if visible and [d for d in t.devices if d >= visible]:
        report.problems.append(f"train.devices {t.devices}: only GPUs 0..{visible - 1} are visible")
    usable = min(len(t.devices), visible) if t.devices else visible
    if t.num_processes > 1 and visible and t.num_processes > usable:
        report.problems.append(f"train.num_processes={t.num_processes} but only {usable} GPUs are usable")
    if t.accelerate_config and not visible:
        report.problems.append(f"train.accelerate_config {t.accelerate_config} is for GPUs and none is visible")
    if visible == 0 and any(v for k, v in t.trainer_settings.items() if k in ("bf16", "fp16", "tf32")):
        report.problems.append("train: bf16/fp16/tf32 need a GPU and none is visible")
    report.notes.append(f"GPUs visible: {visible}")


def _model_bytes(model: str) -> int | None:
    """A model's size on disk: a local folder's files, else estimated from the id's parameter count."""
    path = Path(model)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    match = re.search(r"(\d+(?:\.\d+)?)B\b", model)
    return int(float(match.group(1)) * 1e9 * 2) if match else None  # bf16: 2 bytes per parameter


def check_disk(recipe: Recipe, report: CheckReport) -> None:
    base = _model_bytes(recipe.train.base_model)
    if base is None:
        report.notes.append(f"disk: size of {recipe.train.base_model} unknown; not checked")
        return
    needed = 3 * base + 2 * 2**30  # Hub cache copy + merged model + staged copy, plus data and checkpoints
    folder = Path(recipe.train.output).resolve()
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    report.notes.append(f"disk: {free / 2**30:.1f} GiB free at {folder}, about {needed / 2**30:.1f} GiB needed")
    if free < needed:
        report.problems.append(
            f"disk: {free / 2**30:.1f} GiB free at {folder}, the release needs about {needed / 2**30:.1f} GiB "
            f"(3x the {base / 2**30:.1f} GiB base model + 2 GiB)"
        )


def run_checks(recipe: Recipe, push: bool = False) -> CheckReport:
    report = CheckReport()
    checks = [check_trainer, check_eval, check_devices, check_disk, check_source]
    if push:
        checks.insert(0, check_push)
    for check in checks:
        check(recipe, report)
    return report
