"""The types every generation backend shares: what a request states, what comes back, who answered.

A request states *every* sampling field (`Sampling`), never leaving one to the server. vLLM serves with
`--generation-config auto` by default, which fills each field a request leaves out from the model's
`generation_config.json` (Qwen3: temperature 0.7, top_p 0.8, top_k 20); a body that states them all
samples the same on any server, whatever its flags, including servers someone else started (a
`base_url` list at cluster scale), so the request itself is the record of what was used. This was chosen
over starting every server with `--generation-config vllm`, which would cover only the servers a stage
starts itself. What keeps the choice from being forgotten: `Sampling` has no unset field, every body is
built by `sampling_fields`, and the contract suite (`make contract`) runs vLLM's own
`get_diff_sampling_param` + `to_sampling_params` on every body the project sends and requires the result
to be what the project records, under the model's generation config and under vLLM's neutral one alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

# vLLM 0.33 `SamplingParams.__post_init__`: below _SAMPLING_EPS a request is greedy (top_p 1, top_k 0,
# min_p 0); a temperature between 0 and _MAX_TEMP is raised to _MAX_TEMP (bfcl's 0.001 runs at 0.01).
VLLM_SAMPLING_EPS = 1e-5
VLLM_MIN_TEMPERATURE = 1e-2
# The fields beside temperature/top_p/seed that only vLLM's API has (`transformers serve` and hosted OpenAI
# refuse or ignore them): sent when the server speaks vLLM, recorded as the server's own otherwise.
VLLM_ONLY_FIELDS = ("top_k", "min_p", "repetition_penalty")

Api = Literal["vllm", "openai"]
Endpoint = Literal["chat", "completions"]


@dataclass(frozen=True, slots=True)
class Sampling:
    """Every sampling field of one request: vLLM's `_DEFAULT_SAMPLING_PARAMS` list, the seed and the token
    budget. The neutral values are vLLM's own defaults (`--generation-config vllm`)."""

    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off (vLLM 0.33 treats 0 and -1 alike)
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = 0

    def effective(self, engine: str | None) -> dict[str, Any]:
        """What the engine samples with: vLLM's rules for `vllm` (greedy below 1e-5, temperature raised to
        0.01 below that, the requested value kept beside it), transformers' (greedy at 0) for `transformers`;
        for an unknown server (`None`) the fields only vLLM's API has are the server's and recorded as such."""
        values = asdict(self)
        greedy_below = VLLM_SAMPLING_EPS if engine == "vllm" else 0.0
        if self.temperature <= greedy_below:
            values.update(temperature=0.0, top_p=1.0, top_k=0, min_p=0.0)
        elif engine == "vllm" and self.temperature < VLLM_MIN_TEMPERATURE:
            values.update(temperature=VLLM_MIN_TEMPERATURE, requested_temperature=self.temperature)
        if engine is None:
            values.update({name: "server default" for name in VLLM_ONLY_FIELDS})
        return values


def sampling_fields(sampling: Sampling, api: Api, endpoint: Endpoint) -> dict[str, Any]:
    """The body fields that state `sampling`: all of them for vLLM, the OpenAI API's for other servers.
    Chat bodies name the budget `max_completion_tokens` (`max_tokens` is deprecated there in vLLM 0.33)."""
    fields: dict[str, Any] = {
        "max_completion_tokens" if endpoint == "chat" else "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
        "seed": sampling.seed,
    }
    if api == "vllm":
        fields.update(top_k=sampling.top_k, min_p=sampling.min_p, repetition_penalty=sampling.repetition_penalty)
    return fields


@dataclass(frozen=True, slots=True)
class Constraint:
    """What decoding must produce: a JSON schema (`kind` json, `value` the schema), an EBNF grammar (`kind`
    grammar, `value` its text) or a regular expression (`kind` regex). The same constraint is enforced in
    process (xgrammar) and by vLLM (`structured_outputs`); JSON is compiled without free whitespace on both."""

    kind: Literal["json", "grammar", "regex"]
    value: Any

    @classmethod
    def json_schema(cls, schema: dict[str, Any]) -> Constraint:
        return cls("json", schema)

    @classmethod
    def grammar(cls, ebnf: str) -> Constraint:
        return cls("grammar", ebnf)

    @classmethod
    def regex(cls, pattern: str) -> Constraint:
        return cls("regex", pattern)


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One generation: chat `messages` (the model's chat template renders them) or a `prompt` the caller
    rendered itself (`/v1/completions`, so a server cannot re-template it), under an optional constraint."""

    sampling: Sampling
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    constraint: Constraint | None = None

    @property
    def endpoint(self) -> Endpoint:
        return "completions" if self.prompt is not None else "chat"


@dataclass(frozen=True, slots=True)
class Generation:
    """What one request returned; `truncated` when it stopped at its token budget."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    truncated: bool = False


@dataclass(frozen=True)
class Identity:
    """Who answers, as the cache key and provenance record it: the backend, the model, its revision (a commit
    sha once pinned; `local` for a folder), the engine whose sampling rules apply (None: a server whose
    engine is unknown) and how constraints are enforced."""

    backend: str
    model: str
    revision: str
    engine: str | None
    constraint: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Backend:
    """Base of the registered backends (`apo_planner.generation.BACKENDS`): a subclass sets `name` and
    `config_class` and implements `identity`, `agenerate` (and `generate` where it can run synchronously)."""

    name: ClassVar[str]
    config_class: ClassVar[type]

    config: Any
    usage: Counter[str] = field(default_factory=Counter)  # prompt_tokens, completion_tokens so far
    retries: int = 0  # transient request failures retried so far

    def __post_init__(self) -> None:
        """Subclasses set up their state here (the dataclass `__init__` calls it)."""

    @property
    def servers(self) -> dict[str, dict[str, int]]:
        """Requests, failures and times taken out per server URL (empty in process)."""
        return {}

    @property
    def concurrency(self) -> int:
        """Requests worth having in flight at once (one for a model in this process)."""
        return 1

    def pin(self) -> None:
        """Resolve the model's revision to a commit before the stage starts (`identity` reports it)."""

    def identity(self) -> Identity:
        raise NotImplementedError

    def effective(self, sampling: Sampling) -> dict[str, Any]:
        return sampling.effective(self.identity().engine)

    def check(self) -> None:
        """Fail fast, with advice, when the model cannot be reached or loaded."""

    @contextmanager
    def served(self, workdir: Path, role: str) -> Iterator[None]:
        """The backend's own server (if it starts one) for the duration of the block."""
        yield

    def generate(self, request: GenerationRequest) -> Generation:
        raise NotImplementedError

    async def agenerate(self, request: GenerationRequest) -> Generation:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release connections; the backend can be used again afterwards."""

    def record(self, generation: Generation) -> Generation:
        self.usage["prompt_tokens"] += generation.prompt_tokens
        self.usage["completion_tokens"] += generation.completion_tokens
        return generation
