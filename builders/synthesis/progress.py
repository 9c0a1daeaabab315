"""What synthesis achieves while it runs: the progress bar's rates and ETA, and stats.json's `throughput`.

At 310k trajectories the question during a run is "how fast, and when will it end"; afterwards it is
"what did the servers give us". Both come from the same counts: requests sent, tokens the servers
reported, trajectories answered, answers already cached.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from tqdm.auto import tqdm

_REFRESH_S = 1.0  # the postfix is rebuilt at most this often: formatting it per answer would cost more than it says


class Progress:
    """A tqdm bar over pending trajectories (its ETA is tqdm's) with requests/s, tokens/s and cache hits."""

    def __init__(self, pending: int, cache_hits: int) -> None:
        self.pending = pending
        self.cache_hits = cache_hits
        self.started = time.perf_counter()
        self._shown = self.started
        self.bar = tqdm(total=pending, desc="synthesizing", unit="traj", mininterval=_REFRESH_S)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def update(self, requests: int, usage: Counter[str]) -> None:
        """One trajectory answered (or failed): advance, and refresh the rates when they are due."""
        self.bar.update()
        now = time.perf_counter()
        if now - self._shown >= _REFRESH_S or self.bar.n == self.pending:
            self._shown = now
            elapsed = max(now - self.started, 1e-9)
            tokens = usage["prompt_tokens"] + usage["completion_tokens"]
            self.bar.set_postfix(
                {"req/s": f"{requests / elapsed:.1f}", "tok/s": f"{tokens / elapsed:.0f}", "cached": self.cache_hits},
                refresh=False,
            )

    def summary(self, stats: Counter[str], backend: Any) -> dict[str, Any]:
        """stats.json's `throughput`: what this run asked and how fast, per server where there are servers."""
        seconds = time.perf_counter() - self.started
        trajectories = stats["synthesized"] + stats["request_failed"]
        requests = stats["model_calls"]
        prompt, completion = backend.usage["prompt_tokens"], backend.usage["completion_tokens"]
        return {
            "seconds": round(seconds, 3),
            "trajectories": trajectories,
            "requests": requests,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "trajectories_per_s": _rate(trajectories, seconds),
            "requests_per_s": _rate(requests, seconds),
            "tokens_per_s": _rate(prompt + completion, seconds),
            "completion_tokens_per_s": _rate(completion, seconds),
            "cache_hits": self.cache_hits,
            "servers": backend.servers,
        }


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 2) if seconds > 0 else 0.0
