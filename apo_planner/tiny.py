"""Tiny random Qwen3 models built offline, for smoke runs and tests.

They go through exactly the code paths of the real models (chat template with tools, xgrammar,
`transformers serve`, TRL, PEFT, vLLM-compatible layout), only small: hidden size 64, 2 layers,
a byte-level BPE tokenizer trained here on a fixed text, and a ChatML chat template that renders
tools the way Qwen's does. Deterministic for a given seed, so runs that use them are reproducible.
"""

from __future__ import annotations

from pathlib import Path

# ChatML with a Qwen-style tool block. transformers renders with trim_blocks, so every literal
# newline sits before a tag, never right after one.
CHAT_TEMPLATE = (
    "{% if tools %}"
    "<|im_start|>system\n"
    "{% if messages[0].role == 'system' %}{{ messages[0].content }}\n\n{% endif %}"
    "# Tools\n<tools>\n{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}</tools><|im_end|>\n"
    "{% elif messages[0].role == 'system' %}"
    "<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if not (message.role == 'system' and loop.first) %}"
    "<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_TRAINING_TEXT = (
    "You are a planner for a tool-calling assistant. Write the shortest sequence of tool calls. "
    '1. get_weather({"city": "Paris"}) after 1\n   why: the answer needs the weather\n'
    '{"keep": [{"index": 0, "rationale": "needed", "depends_on": []}]} '
    "search flights book order status update translate text convert currency stock price restaurant "
    "the a an of to in for and is it that with on this as you are be by or from what which how "
    "0123456789 {}[]():,.\"' -_ true false null user assistant system tool tools function name "
    "arguments description parameters properties required type string integer number object array "
)


def build_tokenizer(vocab_size: int = 512):
    """Byte-level BPE (any text encodes) trained on a fixed text, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_TRAINING_TEXT] * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny_model(
    output: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    vocab_size: int = 512,
) -> Path:
    """Write a random tiny Qwen3 causal LM with tokenizer and chat template to `output` (atomically: a
    creation that is killed leaves no folder a re-run would take for a model)."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, Qwen3Config

    from apo_planner.artifacts import atomic_dir

    output = Path(output)
    tokenizer = build_tokenizer(vocab_size)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    with atomic_dir(output) as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return output


MODEL_FILES = ("config.json", "generation_config.json", "tokenizer_config.json", "tokenizer.json")


def is_complete(path: Path) -> bool:
    """A model folder `make_tiny_model` finished: its JSON files read and its weights are there."""
    import json

    try:
        for name in MODEL_FILES:
            json.loads((path / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (path / "model.safetensors").is_file() and (path / "model.safetensors").stat().st_size > 0


def ensure_tiny_model(path: str | Path, seed: int = 0) -> Path:
    """Create the tiny model at `path` unless a complete one is already there (idempotent for re-runs;
    a folder left half-written by an older version is made again)."""
    path = Path(path)
    if is_complete(path):
        return path
    return make_tiny_model(path, seed=seed)
