"""`server.engine: transformers`: an OpenAI-compatible server for small models on CPU that enforces
structured outputs the way vLLM does (`apo-planner serve planner --engine transformers`).

Stages start it through `apo_planner.serving` exactly as they start vLLM, so the smoke recipe and the paper
recipe differ only in the engine: the planner's requests (the BFCL handler's, `apo_planner.portable`) and
the executor's (bfcl-eval's own handlers) are the same bytes either way. It answers:

- `POST /v1/completions` (a prompt) and `POST /v1/chat/completions` (messages rendered with the model's own
  chat template, `tools` included; with `tool_choice: none` only, since it parses no tool calls);
- vLLM's constraints, `structured_outputs: {grammar | json | regex | choice}` and the older `guided_grammar`
  / `guided_json` / `guided_regex` / `guided_choice`, and OpenAI's `response_format` JSON schema, enforced
  with xgrammar (JSON without free whitespace, the rule the project starts vLLM with);
- every sampling field vLLM takes (a request states them all; none falls back to the model's
  `generation_config.json`);
- `GET /v1/models` (the served name), `GET /version` (`{"server": "apo-planner", ...}`: clients tell it
  from vLLM by it) and `GET /health`.

It refuses, with HTTP 400 naming them, fields it does not know (vLLM ignores unknown fields, so a
constraint field it does not know would go unenforced without a word), a prompt longer than the model's
context (vLLM's message), and more than one constraint. Generation is the `transformers` backend's, one
request at a time (the model is not re-entrant): concurrent requests queue, which `benchmarks.planner_server`
measures against in-process generation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
import uuid
from typing import Any

from apo_planner import __version__
from apo_planner.generation.base import Constraint, GenerationRequest, Sampling
from apo_planner.generation.inprocess import BackendError, TransformersBackend, TransformersConfig
from apo_planner.portable.apo_planner_grammar import ebnf_literal
from apo_planner.prompts import content_text

logger = logging.getLogger("apo_planner.generation.openai_server")  # also when run as __main__

SERVER_NAME = "apo-planner"
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty",
                 "frequency_penalty", "seed")  # fmt: skip
CONSTRAINT_KEYS = ("structured_outputs", "guided_grammar", "guided_json", "guided_regex", "guided_choice",
                   "response_format")  # fmt: skip
# Fields that change nothing here at the only value this server has for them (OpenAI's defaults).
INERT = {"n": 1, "stream": False, "user": None, "logprobs": None, "echo": False, "skip_special_tokens": True}
COMMON = {"model", "max_tokens", *SAMPLING_KEYS, *CONSTRAINT_KEYS, *INERT}
KNOWN = {
    "completions": COMMON | {"prompt"},
    "chat": COMMON | {"messages", "tools", "tool_choice", "max_completion_tokens", "add_generation_prompt",
                      "chat_template_kwargs", "parallel_tool_calls"},
}  # fmt: skip


class RequestError(Exception):
    """What is wrong with a request, answered with its HTTP status (vLLM's error body)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _choice_grammar(choices: Any) -> str:
    if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
        raise RequestError("choice: give a non-empty list of strings")
    return "root ::= " + " | ".join(ebnf_literal(c) for c in choices)


def constraint_of(body: dict[str, Any]) -> Constraint | None:
    """The one constraint a request states, in whichever of vLLM's or OpenAI's fields."""
    found: list[tuple[str, Any]] = []
    structured = body.get("structured_outputs")
    if structured is not None:
        if not isinstance(structured, dict):
            raise RequestError('structured_outputs must be an object, e.g. {"grammar": "root ::= ..."}')
        unknown = set(structured) - {"grammar", "json", "regex", "choice"}
        if unknown:
            raise RequestError(f"structured_outputs: unsupported keys {sorted(unknown)} (grammar, json, regex, choice)")
        found += [(k, v) for k, v in structured.items() if v is not None]
    for key in ("grammar", "json", "regex", "choice"):
        if body.get(f"guided_{key}") is not None:
            found.append((key, body[f"guided_{key}"]))
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else response_format
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        found.append(("json", schema if schema is not None else {"type": "object"}))
    elif kind == "json_object":
        found.append(("json", {"type": "object"}))
    elif kind not in (None, "text"):
        raise RequestError("response_format: type json_schema, json_object or text")
    if len(found) > 1:
        raise RequestError(f"only one kind of structured output per request; got {[k for k, _ in found]}")
    if not found:
        return None
    kind, value = found[0]
    if kind == "json":
        schema = json.loads(value) if isinstance(value, str) else value
        if not isinstance(schema, dict):
            raise RequestError("json: give a JSON schema object")
        return Constraint.json_schema(schema)
    if kind == "choice":
        return Constraint.grammar(_choice_grammar(value))
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"{kind}: give its text")
    return Constraint.regex(value) if kind == "regex" else Constraint.grammar(value)


def sampling_of(body: dict[str, Any], max_tokens: int) -> Sampling:
    values: dict[str, Any] = {}
    for key in SAMPLING_KEYS:
        if body.get(key) is not None:
            values[key] = body[key]
    try:
        sampling = Sampling(max_tokens=max_tokens, **values)
    except TypeError as exc:
        raise RequestError(str(exc)) from None
    numbers = {k: getattr(sampling, k) for k in ("temperature", "top_p", "min_p", "repetition_penalty")}
    if any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in numbers.values()):
        raise RequestError("temperature, top_p, min_p and repetition_penalty are numbers")
    if sampling.temperature < 0 or not 0 < sampling.top_p <= 1 or not 0 <= sampling.min_p <= 1:
        raise RequestError("temperature >= 0, 0 < top_p <= 1, 0 <= min_p <= 1")
    if not isinstance(sampling.top_k, int) or sampling.top_k < -1 or not isinstance(sampling.seed, int):
        raise RequestError("top_k (-1 or 0: off) and seed are integers")
    return sampling


class Server:
    """The model (the `transformers` backend) behind the OpenAI routes."""

    def __init__(self, backend: TransformersBackend, served_name: str) -> None:
        self.backend = backend
        self.served_name = served_name
        self.created = int(time.time())

    @property
    def context(self) -> int | None:
        return self.backend.max_context

    def check(self, body: Any, endpoint: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        unknown = sorted(set(body) - KNOWN[endpoint])
        if unknown:
            raise RequestError(
                f"unsupported fields {unknown}: this server refuses what it would not apply (vLLM would ignore them)"
            )
        for key, value in INERT.items():
            if body.get(key, value) not in (value, None):
                raise RequestError(f"{key}: only {json.dumps(value)} is supported")
        if body.get("model") != self.served_name:
            raise RequestError(f"The model `{body.get('model')}` does not exist.", status=404)
        return body

    def prompt_of(self, body: dict[str, Any], endpoint: str) -> str:
        if endpoint == "completions":
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                raise RequestError("prompt: give one string")
            return prompt
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError("messages: give a non-empty list")
        tools = body.get("tools") or None
        if tools is not None and body.get("tool_choice", "auto") != "none":
            raise RequestError(
                '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set: this server '
                'parses no tool calls, send tool_choice "none"'
            )
        rendered = [{**m, "content": content_text(m.get("content"))} for m in messages if isinstance(m, dict)]
        kwargs = body.get("chat_template_kwargs") or {}
        try:
            return self.backend.tokenizer.apply_chat_template(
                rendered,
                tools=tools,
                tokenize=False,
                add_generation_prompt=body.get("add_generation_prompt", True),
                **kwargs,
            )
        except Exception as exc:  # a template that cannot render these messages
            raise RequestError(f"the chat template cannot render this request: {exc}") from None

    def budget(self, body: dict[str, Any], prompt: str, endpoint: str) -> int:
        """The request's token budget, at most what the context leaves (vLLM's rule: the prompt alone must fit)."""
        key = "max_completion_tokens" if endpoint == "chat" and "max_completion_tokens" in body else "max_tokens"
        length = len(self.backend.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        if self.context is not None and length >= self.context:
            raise RequestError(
                f"This model's maximum context length is {self.context} tokens. However, your request has {length} "
                "input tokens. Please reduce the length of the input messages."
            )
        left = (self.context - length) if self.context is not None else 16
        wanted = body.get(key)
        if wanted is None:
            return left
        if not isinstance(wanted, int) or isinstance(wanted, bool) or wanted < 1:
            raise RequestError(f"{key}: a positive integer")
        return min(wanted, left)

    def generate(self, body: Any, endpoint: str) -> dict[str, Any]:
        body = self.check(body, endpoint)
        prompt = self.prompt_of(body, endpoint)
        request = GenerationRequest(
            sampling_of(body, self.budget(body, prompt, endpoint)), prompt=prompt, constraint=constraint_of(body)
        )
        try:
            out = self.backend.generate(request)
        except BackendError as exc:
            raise RequestError(str(exc)) from None
        except RuntimeError as exc:  # xgrammar: a grammar, schema or regex it cannot compile
            raise RequestError(f"the constraint does not compile: {exc}") from None
        finish = "length" if out.truncated else "stop"
        usage = {
            "prompt_tokens": out.prompt_tokens,
            "completion_tokens": out.completion_tokens,
            "total_tokens": out.prompt_tokens + out.completion_tokens,
        }
        common = {"created": int(time.time()), "model": self.served_name, "usage": usage}
        if endpoint == "chat":
            message = {"role": "assistant", "content": out.text, "tool_calls": []}
            choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "choices": [choice], **common}
        choice = {"index": 0, "text": out.text, "finish_reason": finish, "logprobs": None}
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "choices": [choice], **common}

    def app(self) -> Any:
        from aiohttp import web

        def error(message: str, status: int) -> web.Response:
            kind = "NotFoundError" if status == 404 else "BadRequestError"
            return web.json_response(
                {"error": {"message": message, "type": kind, "param": None, "code": status}}, status=status
            )

        def route(endpoint: str):
            async def handle(request: web.Request) -> web.Response:
                try:
                    body = await request.json()
                except json.JSONDecodeError:
                    return error("the request body is not JSON", 400)
                try:
                    return web.json_response(await asyncio.to_thread(self.generate, body, endpoint))
                except RequestError as exc:
                    return error(str(exc), exc.status)

            return handle

        async def models(request: web.Request) -> web.Response:
            model = {
                "id": self.served_name,
                "object": "model",
                "created": self.created,
                "owned_by": SERVER_NAME,
                "root": self.backend.config.model,
                "max_model_len": self.context,
            }
            return web.json_response({"object": "list", "data": [model]})

        async def version(request: web.Request) -> web.Response:
            return web.json_response({"version": __version__, "server": SERVER_NAME, "engine": "transformers"})

        async def health(request: web.Request) -> web.Response:
            return web.Response(status=200)

        app = web.Application(client_max_size=1 << 30)
        app.router.add_post("/v1/completions", route("completions"))
        app.router.add_post("/v1/chat/completions", route("chat"))
        app.router.add_get("/v1/models", models)
        app.router.add_get("/version", version)
        app.router.add_get("/health", health)
        return app


def main(argv: list[str] | None = None) -> None:
    from aiohttp import web

    from apo_planner import logs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="local model folder or Hub id")
    parser.add_argument("--served-model-name", help="the id clients send (default: the model as given)")
    parser.add_argument("--revision", default="main", help="Hub revision (a commit sha when the stage pinned it)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    args = parser.parse_args(argv)
    logs.setup("INFO")
    config = TransformersConfig(model=args.model, revision=args.revision, device=args.device, dtype=args.dtype)
    backend = TransformersBackend(config)
    backend.check()  # loaded before the port opens: answering /v1/models means ready
    server = Server(backend, args.served_model_name or args.model)
    logger.info("serving %s as %r at http://%s:%d/v1", args.model, server.served_name, args.host, args.port)
    access = logging.getLogger(f"{logger.name}.access")
    web.run_app(server.app(), host=args.host, port=args.port, print=None, access_log=access)


if __name__ == "__main__":
    main()
