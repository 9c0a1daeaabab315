"""`backend: transformers`: the model in this process, decoding under xgrammar.

For small local models and CPU runs (the smoke recipe, tests, `Planner.from_pretrained`). A JSON schema
compiles without free whitespace (compact, the rule vLLM is started with too), an EBNF grammar as it is; each is
compiled once and masks the logits at every step. One generation at a time: the model is not re-entrant,
so threads (bfcl's workers) and tasks (the synthesizer's) queue on a lock.
"""

from __future__ import annotations

import asyncio
import json
import threading
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from apo_planner.errors import UserError
from apo_planner.generation import BACKENDS
from apo_planner.generation.base import Backend, Generation, GenerationRequest, Identity, Sampling
from apo_planner.generation.config import BackendConfig
from apo_planner.pinning import LOCAL, is_local, pin_model

# JSON without free whitespace, in the one form vLLM's `disable_any_whitespace` compiles it to (vLLM 0.33
# passes exactly these to xgrammar): the served and the in-process path accept the same strings
# (`make contract` compares them token by token).
JSON_SEPARATORS = (",", ":")
SERVER_KEYS = ("base_url", "server", "api", "structured_output", "api_key_env", "max_retries", "health_retry_s")


class BackendError(UserError):
    """A model that cannot be reached or loaded, as the user can fix it (stages may wrap it in their own)."""


class TransformersConfig(BackendConfig):
    """The model in this process (transformers + xgrammar)."""

    backend: Literal["transformers"] = "transformers"
    device: str | None = Field(None, description="torch device (default: cuda when available, else cpu)")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _server_keys_need_openai(cls, data: Any) -> Any:
        if isinstance(data, dict) and (given := [k for k in SERVER_KEYS if k in data]):
            raise ValueError(
                f"{', '.join(given)}: server settings need backend openai (backend transformers runs the model "
                "in process)"
            )
        return data


@BACKENDS.register("transformers")
class TransformersBackend(Backend):
    """A local or Hub model in this process (transformers), decoding under JSON schemas and plan grammars with
    xgrammar's logits processor; one generation at a time. For small models and CPU runs (smoke, tests)."""

    name = "transformers"
    config_class = TransformersConfig

    def __post_init__(self) -> None:
        self._revision: str | None = None
        self._lock = threading.Lock()
        self._compiled: dict[tuple[str, str], Any] = {}
        if self.config.tiny_model:  # before anything records provenance of a model that must exist
            from apo_planner.tiny import ensure_tiny_model

            ensure_tiny_model(self.config.model, seed=getattr(self.config, "seed", 0))

    def pin(self) -> None:
        if self._revision is None:
            self._revision = pin_model(self.config.model, self.config.revision, "revision")

    def identity(self) -> Identity:
        self.pin()
        return Identity(self.name, self.config.model, self._revision or LOCAL, "transformers", "xgrammar")

    def check(self) -> None:
        self._loaded  # noqa: B018 - load now: a model that cannot load fails before any request

    @cached_property
    def _loaded(self) -> tuple[Any, Any, Any]:
        """(tokenizer, model, xgrammar compiler), loaded at the pinned revision."""
        import torch
        import xgrammar as xgr
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.pin()
        revision = None if is_local(self.config.model) else self._revision
        if revision is None and not Path(self.config.model).is_dir():
            raise BackendError(f"model {self.config.model!r}: no such folder; give a model folder or a Hub id")
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.config.model, revision=revision)
            model = AutoModelForCausalLM.from_pretrained(self.config.model, revision=revision, dtype=self.config.dtype)
        except OSError as exc:
            raise BackendError(f"cannot load model {self.config.model!r}: {exc}") from None
        device = self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device).eval()
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=model.config.vocab_size)
        return tokenizer, model, xgr.GrammarCompiler(info)

    @property
    def tokenizer(self) -> Any:
        return self._loaded[0]

    @property
    def max_context(self) -> int | None:
        """The model's context in tokens (its `max_position_embeddings`)."""
        return getattr(self._loaded[1].config, "max_position_embeddings", None)

    def _processors(self, request: GenerationRequest) -> list[Any]:
        constraint = request.constraint
        if constraint is None:
            return []
        from xgrammar.contrib.hf import LogitsProcessor

        compiler = self._loaded[2]
        # the schema as sent to a server: key order is the order properties are generated in
        key = json.dumps(constraint.value) if constraint.kind == "json" else constraint.value
        if (constraint.kind, key) not in self._compiled:
            if constraint.kind == "json":
                compiled = compiler.compile_json_schema(key, any_whitespace=False, separators=JSON_SEPARATORS)
            elif constraint.kind == "regex":
                compiled = compiler.compile_regex(key)
            else:
                compiled = compiler.compile_grammar(key)
            self._compiled[(constraint.kind, key)] = compiled
        return [LogitsProcessor(self._compiled[(constraint.kind, key)])]  # stateful: a fresh one per generation

    @staticmethod
    def _sampling(sampling: Sampling) -> dict[str, Any]:
        """`generate` arguments stating every field (the model's generation_config fills none of them)."""
        if sampling.presence_penalty or sampling.frequency_penalty:
            raise BackendError("presence_penalty / frequency_penalty: transformers generation has no such fields")
        if sampling.temperature <= 0:
            return {"do_sample": False, "repetition_penalty": sampling.repetition_penalty}
        return {
            "do_sample": True,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k,  # 0 disables top-k (the generation config's 50 or 20 would apply otherwise)
            "min_p": sampling.min_p or None,
            "repetition_penalty": sampling.repetition_penalty,
        }

    def generate(self, request: GenerationRequest) -> Generation:
        import torch

        tokenizer, model, _ = self._loaded
        text = request.prompt
        if text is None:
            text = tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
        with self._lock:
            inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
            processors = self._processors(request)
            torch.manual_seed(request.sampling.seed)
            with torch.no_grad():
                out = model.generate(
                    **inputs,
                    max_new_tokens=request.sampling.max_tokens,
                    logits_processor=processors,
                    **self._sampling(request.sampling),
                )
        prompt_tokens = inputs["input_ids"].shape[1]
        new = out[0, prompt_tokens:]
        ended = len(new) > 0 and int(new[-1]) in _eos_ids(model, tokenizer)
        return self.record(
            Generation(
                tokenizer.decode(new, skip_special_tokens=True),
                prompt_tokens,
                len(new),
                truncated=len(new) >= request.sampling.max_tokens and not ended,
            )
        )

    async def agenerate(self, request: GenerationRequest) -> Generation:
        return await asyncio.to_thread(self.generate, request)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
