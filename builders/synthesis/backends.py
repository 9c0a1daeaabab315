"""Where the synthesizer's model runs: an OpenAI-compatible endpoint or in-process transformers.

Both take a prompt, a JSON schema and a seed and return the raw text; both constrain decoding to
the schema where they can (vLLM `structured_outputs` / OpenAI `response_format`; xgrammar for
transformers). The caller validates every answer anyway: not every server enforces schemas
(`transformers serve` does not) and xgrammar cannot enforce `uniqueItems`.
"""

from __future__ import annotations

import asyncio
import json
import os
from functools import lru_cache
from typing import Any, Protocol

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from builders.config import LLMConfig


class RequestFailed(Exception):
    """A request that still failed after its retries (network, timeout, 5xx); recorded, not cached."""


class Backend(Protocol):
    name: str
    retries: int  # transient request errors retried so far (stats.json's `request_retries`)

    async def complete(self, prompt: str, schema: dict[str, Any], seed: int, temperature: float) -> str: ...

    def check(self) -> None:
        """Fail fast, with advice, when the model cannot be reached or loaded."""

    async def aclose(self) -> None: ...


def _retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError)):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


class OpenAIBackend:
    """Any OpenAI-compatible server (vLLM, `transformers serve`, hosted APIs), called concurrently."""

    name = "openai"

    def __init__(self, config: LLMConfig) -> None:
        import openai

        self.config = config
        api_key = os.environ.get(config.api_key_env) or "EMPTY"
        # Retries belong to tenacity below (backoff with jitter, counted), not to the client.
        self.client = openai.AsyncOpenAI(
            base_url=config.base_url, api_key=api_key, timeout=config.timeout_s, max_retries=0
        )
        self.retries = 0

    def check(self) -> None:
        import openai

        sync = openai.OpenAI(
            base_url=self.config.base_url,
            api_key=self.client.api_key,
            timeout=min(self.config.timeout_s, 30),
            max_retries=2,
        )
        try:
            served = [m.id for m in sync.models.list().data]
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise RuntimeError(
                f"no OpenAI-compatible server answers at {self.config.base_url} ({type(exc).__name__}). "
                "Start one with `make serve-synth` (vLLM, separate environment; see README) or point "
                "build.llm.base_url at a running server."
            ) from None
        finally:
            sync.close()
        if served and self.config.model not in served:
            raise RuntimeError(
                f"the server at {self.config.base_url} serves {served}, not {self.config.model!r}; "
                "set build.llm.model to the served name"
            )

    def _extra(self, schema: dict[str, Any]) -> dict[str, Any]:
        mode = self.config.structured_output
        if mode == "structured_outputs":
            return {"extra_body": {"structured_outputs": {"json": schema}}}
        if mode == "response_format":
            return {"response_format": {"type": "json_schema", "json_schema": {"name": "selection", "schema": schema}}}
        return {}

    async def complete(self, prompt: str, schema: dict[str, Any], seed: int, temperature: float) -> str:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.config.max_retries + 1),
            wait=wait_exponential_jitter(initial=0.2, max=20),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        self.retries += 1
                    response = await self.client.chat.completions.create(
                        model=self.config.model,
                        messages=[{"role": "user", "content": prompt}],
                        temperature=temperature,
                        top_p=self.config.top_p,
                        max_tokens=self.config.max_tokens,
                        seed=seed,
                        **self._extra(schema),
                    )
        except Exception as exc:
            raise RequestFailed(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        if not response.choices:
            raise RequestFailed("response has no choices")
        return response.choices[0].message.content or ""

    async def aclose(self) -> None:
        await self.client.close()


class TransformersBackend:
    """In-process generation with xgrammar-constrained decoding; for small local models and CPU runs."""

    name = "transformers"
    retries = 0  # in process: no requests to retry

    def __init__(self, config: LLMConfig) -> None:
        from apo_planner.tiny import ensure_tiny_model

        self.config = config
        self._model = None
        self._lock = asyncio.Lock()
        if config.tiny_model:  # before anything records provenance of a model that must exist
            ensure_tiny_model(config.model, seed=config.seed)

    def check(self) -> None:
        self._load()

    def _load(self):
        if self._model is None:
            import xgrammar as xgr
            from transformers import AutoModelForCausalLM, AutoTokenizer

            revision = None if os.path.isdir(self.config.model) else self.config.revision
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.config.model, revision=revision)
                self._model = AutoModelForCausalLM.from_pretrained(self.config.model, revision=revision)
            except OSError as exc:
                raise RuntimeError(f"cannot load synthesizer model {self.config.model!r}: {exc}") from None
            self._model.eval()
            info = xgr.TokenizerInfo.from_huggingface(self._tokenizer, vocab_size=self._model.config.vocab_size)
            self._compiler = xgr.GrammarCompiler(info)
        return self._model

    @lru_cache(maxsize=64)  # noqa: B019 - one backend per build; schemas repeat per call count
    def _grammar(self, schema_json: str):
        return self._compiler.compile_json_schema(schema_json, any_whitespace=False)

    def _generate(self, prompt: str, schema: dict[str, Any], seed: int, temperature: float) -> str:
        import torch
        from xgrammar.contrib.hf import LogitsProcessor

        model = self._load()
        text = self._tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        inputs = self._tokenizer(text, return_tensors="pt", add_special_tokens=False)
        processor = LogitsProcessor(self._grammar(json.dumps(schema, sort_keys=True)))
        torch.manual_seed(seed)
        sampling = (
            {"do_sample": True, "temperature": temperature, "top_p": self.config.top_p}
            if temperature > 0
            else {"do_sample": False}
        )
        with torch.no_grad():
            out = model.generate(
                **inputs, max_new_tokens=self.config.max_tokens, logits_processor=[processor], **sampling
            )
        return self._tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    async def complete(self, prompt: str, schema: dict[str, Any], seed: int, temperature: float) -> str:
        async with self._lock:  # one generate at a time; the model is not re-entrant
            return await asyncio.to_thread(self._generate, prompt, schema, seed, temperature)

    async def aclose(self) -> None:
        """The model stays loaded: a build may synthesize again after a resume."""


def make_backend(config: LLMConfig) -> Backend:
    return OpenAIBackend(config) if config.backend == "openai" else TransformersBackend(config)
