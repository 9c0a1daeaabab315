"""The LLM synthesizer: a model selects which original calls to keep, with rationales and edges.

The model answers with a selection (JSON constrained by `selection_schema`), never with calls of
its own. Every answer is validated; an invalid one is asked again (bounded, with a fresh seed),
then recorded as invalid with its reason. Answers live in a content-addressed cache, so re-runs
and resumed runs only ask for what is missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import datasets
import fastjsonschema
import orjson

from apo_planner.builders.config import ConsistencyConfig, LLMConfig
from apo_planner.builders.errors import SynthesisError
from apo_planner.builders.records import Trajectory
from apo_planner.builders.synthesis.cache import AnswerCache, CachedAnswer, cache_key
from apo_planner.builders.synthesis.consistency import CHECKS_VERSION, check_consistency
from apo_planner.builders.synthesis.progress import Progress
from apo_planner.builders.synthesis.selection import InvalidSelection, KeptCall, Selection
from apo_planner.generation import Backend, Constraint, GenerationRequest, make_backend
from apo_planner.generation.inprocess import BackendError
from apo_planner.generation.server import RequestFailed
from apo_planner.plan import normalize_rationale
from apo_planner.templating import environment

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_TEMPLATE = TEMPLATES / "select_calls.jinja"
NOT_RETRIED = {"no_redundancy"}
_ADVICE = {
    "openai": ". Start one with `make serve-synth` (vLLM, separate environment; see docs/vllm.md) or point "
    "build.llm.base_url at a running server."
}


@lru_cache(maxsize=256)  # one schema per call count, shared by every request (never mutated)
def selection_schema(num_actions: int, rationale_max_chars: int) -> dict[str, Any]:
    """JSON schema of an answer for a trajectory with `num_actions` calls (indices bounded)."""
    index = {"type": "integer", "minimum": 0, "maximum": num_actions - 1}
    return {
        "type": "object",
        "properties": {
            "keep": {
                "type": "array",
                "minItems": 1,
                "maxItems": num_actions,
                "items": {
                    "type": "object",
                    "properties": {
                        "index": index,
                        "rationale": {"type": "string", "maxLength": rationale_max_chars},
                        "depends_on": {"type": "array", "items": index, "maxItems": max(num_actions - 1, 0)},
                    },
                    "required": ["index", "rationale", "depends_on"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["keep"],
        "additionalProperties": False,
    }


@lru_cache(maxsize=256)
def _validator(num_actions: int) -> Callable[[Any], Any]:
    """`selection_schema` compiled to Python (fastjsonschema): interpreting it with jsonschema cost more per
    answer than the rest of the client's work together (benchmarks.synthesis_limit)."""
    return fastjsonschema.compile(selection_schema(num_actions, 10**9))


def parse_selection(raw: str, num_actions: int, rationale_max_chars: int) -> Selection:
    """Raw model text -> validated Selection, or InvalidSelection naming what was wrong."""
    try:
        # strict=False: grammar-constrained decoders may emit raw control characters inside strings
        data = json.loads(raw.strip(), strict=False)
    except json.JSONDecodeError:
        raise InvalidSelection("unparseable_output", raw[:80]) from None
    try:
        _validator(num_actions)(data)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise InvalidSelection("schema_mismatch", exc.message[:120]) from None
    items = sorted(data["keep"], key=lambda k: k["index"])  # listing order carries no meaning
    keep = [
        {
            "index": k["index"],
            "rationale": normalize_rationale(k["rationale"])[:rationale_max_chars],
            "depends_on": sorted(set(k["depends_on"])),
        }
        for k in items
    ]
    selection = selection_from_json({"keep": keep}, num_actions)
    selection.validate(num_actions)
    return selection


def selection_to_json(selection: Selection) -> dict[str, Any]:
    return {
        "keep": [{"index": k.index, "rationale": k.rationale, "depends_on": list(k.depends_on)} for k in selection.kept]
    }


def selection_from_json(data: dict[str, Any], num_actions: int) -> Selection:
    """The inverse of `selection_to_json` for an answer that was parsed and validated before it was cached."""
    kept = tuple(KeptCall(k["index"], k["rationale"], tuple(k["depends_on"])) for k in data["keep"])
    chosen = {k.index for k in kept}
    return Selection(kept=kept, removed={i: "not_selected" for i in range(num_actions) if i not in chosen})


def _columns(dataset: datasets.Dataset, *names: str, batch_size: int = 1024) -> Iterator[tuple[Any, ...]]:
    """Rows of some columns a batch at a time: `dataset[name]` would hold all 310k trajectories at once."""
    for batch in dataset.select_columns(list(names)).iter(batch_size=batch_size):
        yield from zip(*(batch[name] for name in names), strict=True)


def _seed(key: str, attempt: int, base: int) -> int:
    return (int(hashlib.sha256(f"{key}:{attempt}".encode()).hexdigest()[:8], 16) ^ base) & 0x7FFFFFFF


class LLMSynthesizer:
    """Selections from a model, asked once per trajectory in `prepare` and read back from the cache."""

    name = "llm"

    def __init__(
        self, config: LLMConfig, backend: Backend | None = None, consistency: ConsistencyConfig | None = None
    ) -> None:
        self.config = config
        self.consistency = consistency or ConsistencyConfig()
        template_path = Path(config.template) if config.template else DEFAULT_TEMPLATE
        self.template_text = template_path.read_text(encoding="utf-8")
        self.template_sha256 = hashlib.sha256(self.template_text.encode()).hexdigest()
        self.template = environment().from_string(self.template_text)
        self.backend: Backend = backend or make_backend(config)
        try:
            self.backend.pin()  # before the stage starts: provenance and every cache key name the commit
        except BackendError as exc:
            raise SynthesisError(f"build.llm: {exc}") from None
        self._first = config.sampling(config.temperature)
        self._retry = config.sampling(config.retry_temperature)
        self.cache = AnswerCache(config.cache)
        self.stats: Counter[str] = Counter()
        self.failures: list[str] = []
        self.throughput: dict[str, Any] | None = None  # set when the model was asked (not for a cache-only run)
        self._committing = False

    @cached_property
    def _checks(self) -> dict[str, Any]:
        return {"consistency": CHECKS_VERSION, **self.consistency.model_dump()}

    @cached_property  # part of every cache key: built once, not per record
    def sampling_params(self) -> dict[str, Any]:
        """What the backend samples with (the effective values: a server's defaults never fill a field in, and
        vLLM's own clamping is applied), for first attempts and retries, and how answers are constrained."""
        c = self.config
        return {
            "first_attempt": self.backend.effective(c.sampling(c.temperature, c.seed)),
            "retries": self.backend.effective(c.sampling(c.retry_temperature, c.seed)),
            "seed": "per request: derived from this seed, the trajectory and the attempt",
            "max_attempts": c.max_attempts,
            "constraint": self.backend.identity().constraint,
        }

    @cached_property
    def provenance(self) -> dict[str, str]:
        identity = self.backend.identity()
        local = Path(identity.model).exists()
        return {
            "synthesizer_model": Path(identity.model).name if local else identity.model,
            "synthesizer_revision": identity.revision,
            "synthesizer_backend": identity.backend,
            "template_sha256": self.template_sha256,
            "sampling_params": json.dumps(self.sampling_params, sort_keys=True),
        }

    @cached_property
    def _identity(self) -> dict[str, Any]:
        return self.backend.identity().as_dict()

    def key(self, payload: str | bytes) -> str:
        """Cache key of one trajectory (its abstracted JSON) under this model (as the backend identifies it:
        model, pinned revision, engine, constraint), template, sampling and the consistency checks its answers
        had to pass (change those and the answers are asked again)."""
        return cache_key(
            hashlib.sha256(payload if isinstance(payload, bytes) else payload.encode()).hexdigest(),
            self._identity,
            self.template_sha256,
            self.sampling_params,
            self._checks,
        )

    def prompt(self, trajectory: Trajectory) -> str:
        c = self.config
        return self.template.render(
            query=trajectory.query,
            context=trajectory.context,
            actions=trajectory.actions,
            final_answer=trajectory.final_answer,
            max_result_chars=c.max_result_chars,
            max_rationale_chars=c.max_rationale_chars,
            max_answer_chars=c.max_answer_chars,
            max_plan_rationale_chars=c.plan_rationale_max_chars,
        )

    def request(self, key: str, trajectory: Trajectory) -> GenerationRequest:
        """The first attempt's request for a trajectory: its prompt as one user message, the selection schema as
        the constraint; retries differ only in temperature and seed."""
        constraint = Constraint.json_schema(
            selection_schema(len(trajectory.actions), self.config.plan_rationale_max_chars)
        )
        sampling = replace(self._first, seed=_seed(key, 0, self.config.seed))
        return GenerationRequest(
            sampling, messages=[{"role": "user", "content": self.prompt(trajectory)}], constraint=constraint
        )

    async def _answer(self, key: str, trajectory: Trajectory) -> CachedAnswer:
        n = len(trajectory.actions)
        request = self.request(key, trajectory)
        raws: list[str] = []
        reason = ""
        for attempt in range(self.config.max_attempts):
            if attempt:
                request = replace(request, sampling=replace(self._retry, seed=_seed(key, attempt, self.config.seed)))
            self.stats["model_calls"] += 1
            raw = (await self.backend.agenerate(request)).text
            raws.append(raw)
            try:
                selection = parse_selection(raw, n, self.config.plan_rationale_max_chars)
                check_consistency(trajectory, selection, self.consistency)  # a contradiction is asked again
            except InvalidSelection as bad:
                reason = bad.reason
                if reason in NOT_RETRIED:
                    break
                continue
            return CachedAnswer("ok", selection_to_json(selection), None, raws, len(raws))
        return CachedAnswer("invalid", None, reason, raws, len(raws))

    async def _one(self, key: str, trajectory: Trajectory, progress: Progress) -> None:
        try:
            answer = await self._answer(key, trajectory)
        except RequestFailed as exc:
            self.stats["request_failed"] += 1
            if len(self.failures) < 3:
                self.failures.append(str(exc))
        else:
            self.cache.put(key, answer, commit=False)
            self.stats["synthesized"] += 1
            await self._commit()
        finally:
            progress.update(self.stats["model_calls"], self.backend.usage)

    async def _commit(self) -> None:
        """Group commit: the first answer of a loop turn commits after yielding once, taking with it every
        answer that landed in the same turn (one transaction instead of one each; a kill still loses only
        requests in flight)."""
        if self._committing:
            return
        self._committing = True
        try:
            await asyncio.sleep(0)
            self.cache.commit()
        finally:
            self._committing = False

    def _pending(
        self, abstracted: datasets.Dataset, pending: list[tuple[int, str]]
    ) -> Iterator[tuple[str, Trajectory]]:
        """(key, trajectory) for each pending row in row order, read a batch at a time (memory stays flat
        at 310k rows; one sequential read costs less than picking rows by index)."""
        keys = iter(pending)
        index, key = next(keys, (None, ""))
        # small batches: reading one blocks the event loop, and every request in flight waits on it
        batch_size = max(2 * self.backend.concurrency, 32)
        for i, (payload,) in enumerate(_columns(abstracted, "trajectory", batch_size=batch_size)):
            if i == index:
                yield key, Trajectory.from_dict(orjson.loads(payload))
                index, key = next(keys, (None, ""))
                if index is None:
                    return

    async def _run(self, abstracted: datasets.Dataset, pending: list[tuple[int, str]], cache_hits: int) -> None:
        """`concurrency` workers pulling from one queue: a slot is refilled the moment its answer lands
        (no batch waits for its slowest request)."""
        work = self._pending(abstracted, pending)

        async def worker() -> None:
            for key, trajectory in work:
                await self._one(key, trajectory, progress)

        with Progress(len(pending), cache_hits) as progress:
            try:
                await asyncio.gather(*(worker() for _ in range(min(self.backend.concurrency, len(pending)))))
            finally:
                self.cache.commit()
                await self.backend.aclose()
                self.stats["request_retries"] = self.backend.retries
                self.throughput = progress.summary(self.stats, self.backend)

    def prepare(self, abstracted: datasets.Dataset) -> None:
        """Ask the model for every trajectory whose answer is not cached yet."""
        pending: list[tuple[int, str]] = []
        for i, (payload, calls) in enumerate(_columns(abstracted, "trajectory", "num_actions")):
            if payload is None or calls < 2:
                continue  # one call cannot be made shorter: no_redundancy without asking
            key = self.key(payload)
            if key in self.cache:
                self.stats["cache_hits"] += 1
            else:
                pending.append((i, key))
        if pending:
            # the synthesizer's own server (`llm.server`) while requests are pending: started, placed and checked
            # like the eval stage's, logged next to the cache, stopped when synthesis ends or fails; a build whose
            # answers are all cached starts nothing
            with self.backend.served(self.config.server_workdir(), "synthesizer"):
                try:
                    self.backend.check()
                except BackendError as exc:
                    raise SynthesisError(f"{exc}{_ADVICE.get(self.backend.name, '')}") from None
                asyncio.run(self._run(abstracted, pending, self.stats["cache_hits"]))

    def select(self, trajectory: Trajectory, payload: bytes) -> Selection:
        """The answer `prepare` cached for this trajectory; InvalidSelection when there is none or it was invalid."""
        if len(trajectory.actions) < 2:
            raise InvalidSelection("no_redundancy")
        answer = self.cache.get(self.key(payload))
        if answer is None:
            raise InvalidSelection("request_failed")
        if answer.status != "ok":
            raise InvalidSelection(answer.reason or "invalid_output")
        return selection_from_json(answer.selection, len(trajectory.actions))  # validated by the caller

    def close(self) -> None:
        self.cache.close()
