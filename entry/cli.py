"""`apo-planner`: thin entry points over the stage libraries (alignment-handbook style)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, get_args

from apo_planner import __version__, logs
from apo_planner.config import RecipeError
from apo_planner.entry import failures
from apo_planner.entry.recipe import Recipe, load_recipe
from apo_planner.errors import UserError, require_extra

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from apo_planner.serving import ServerConfig


# What each command needs beyond the base install (which builds datasets from logs): the extra that
# installs it and the modules that tell it is there. Refused in one line before any work starts.
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "train": ("train", ("torch", "transformers", "trl", "peft", "accelerate")),
    "merge": ("train", ("torch", "transformers", "peft", "lm_eval")),
    "eval": ("eval", ("torch", "transformers", "matplotlib")),  # + the benchmark's own package (_point_benchmark)
    "release": ("all", ("torch", "transformers", "trl", "peft", "accelerate", "lm_eval", "matplotlib")),
    "tiny-model": ("generation", ("torch", "transformers")),
    "plan": ("generation", ("transformers",)),
}


def _add_recipe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recipe",
        default=None,
        help="a shipped recipe by name (smoke: offline CPU, the default; paper: GPU, Hub) or a YAML file",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set build.limit=1000 (repeatable)",
    )


def _recipe(args: argparse.Namespace, extra: list[str]) -> Recipe:
    return load_recipe(args.recipe, [*args.overrides, *extra])


def _point_benchmark(recipe: Recipe, required: bool = True) -> None:
    """Tell the recipe's benchmark where its files go, before anything imports its package (bfcl-eval reads
    its project root once, at import); `required`: refuse, naming the extra, when the package is missing."""
    from apo_planner.artifacts import EvalDir
    from apo_planner.benchmarks import BENCHMARKS

    bench = BENCHMARKS.get(recipe.eval.benchmark)
    if not required and importlib.util.find_spec(bench.module) is None:
        return
    bench.require(f"the {bench.name} benchmark (eval.benchmark)")
    bench.use_root(EvalDir(Path(recipe.eval.output).resolve()).benchmark_root(bench.name))


def cmd_build(args: argparse.Namespace) -> int:
    """Build (or one shard, or merge the shards), then optionally push; the Hub is checked before building."""
    from apo_planner.builders.build import build, merge_shards, parse_shard
    from apo_planner.builders.report import print_build_stats

    extra = [
        f"build.{k}={v}"
        for k, v in (
            ("source", args.source),
            ("synthesizer", args.synthesizer),
            ("output", args.output),
            ("format", args.format),
            ("limit", args.limit),
            ("num_proc", args.num_proc),
        )
        if v is not None
    ]
    recipe = _recipe(args, extra)
    pusher = None
    if args.push_to_hub:
        if args.shard:
            raise RecipeError("--push-to-hub pushes a whole dataset: use it with --merge-shards, not --shard")
        from apo_planner.cards.hub import HubPusher

        pusher = HubPusher.from_config(recipe.release.push)
        pusher.check_ready()  # before the build, not after it
    shard = parse_shard(args.shard) if args.shard else None  # before anything runs: a bad array fails at once
    if args.shard == "auto":
        logger.info("apo-planner build: --shard auto is shard %d/%d", *shard)
    if args.merge_shards:
        result = merge_shards(recipe.build)
    else:
        result = build(recipe.build, shard)
    print_build_stats(result.stats, result.output)
    if pusher is not None:
        from apo_planner.cards.hub import push_dataset

        private = args.private or recipe.release.push.private
        push_dataset(result.output, args.push_to_hub, recipe.build.version, pusher, private=private)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Through `accelerate launch` whatever `train.num_processes` is (the release trains the same way)."""
    from apo_planner.training.apo import check_config
    from apo_planner.training.launch import launch

    recipe = _recipe(args, [])
    check_config(recipe.train)
    run = launch(recipe.train, recipe.sha256())
    m = run.metrics().model_dump()
    placement = run.provenance().get("placement") or {}
    print(
        f"trained {m['steps']} steps ({m['loss_type']}) in {m['wall_time_s']} s on "
        f"{placement.get('world_size', 1)} process(es); adapter at {run.adapter}"
    )
    if "eval" in m:
        print("eval: " + ", ".join(f"{k}={v:.4g}" for k, v in m["eval"].items() if "rewards" in k or k == "eval_loss"))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from apo_planner.training.merge import merge

    recipe = _recipe(args, [])
    output = merge(recipe.train, args.adapter, args.output)
    print(f"merged model written to {output}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    extra = []
    if args.limit is not None:
        extra.append(f"eval.limit={args.limit}")
    if args.categories:
        extra.append("eval.categories=[" + ",".join(args.categories.split(",")) + "]")
    recipe = _recipe(args, extra)
    _point_benchmark(recipe)
    from apo_planner.evaluation.report import print_comparison
    from apo_planner.evaluation.run import evaluate

    result = evaluate(recipe.eval)
    print_comparison(result.comparison, result.output)
    return 0


def submission_pins(recipe: Recipe) -> object:
    """The leaderboard entry's pins: `eval.submission`, its unset fields from the release (the merged
    model's repo at the tag the release gives it, the namespace, the model license). The default key names both
    models in full (`<planner repo>+<executor entry>`), the display name follows bfcl's "<name> (FC)" style."""
    from apo_planner.evaluation.submission import Pinned

    s, release, executor = recipe.eval.submission, recipe.release, recipe.eval.executor
    repo = s.planner_repo or release.model_repo_id
    fc = recipe.eval.planner_mode == "fc"
    entry = executor.handler if fc else executor.prompt_handler
    executor_name = entry.split("/")[-1].removesuffix("-FC")
    return Pinned(
        name=s.name or f"{repo}+{entry}",
        display_name=s.display_name or f"{executor_name} + {repo.split('/')[-1]} ({'FC' if fc else 'Prompt'})",
        planner_repo=repo,
        planner_revision=s.planner_revision or f"v{recipe.build.version}",
        org=s.org or repo.split("/")[0],
        url=s.url or f"https://huggingface.co/{repo}",
        license=s.license or release.model_license,
    )


def cmd_submission(args: argparse.Namespace) -> int:
    recipe = _recipe(args, [])
    _point_benchmark(recipe)
    from apo_planner.evaluation.submission import export

    done = export(recipe.eval, submission_pins(recipe), allow_partial=args.allow_partial)
    print(f"wrote {done.folder} (README.md says where each file goes): {', '.join(done.files)}")
    if done.unverified:
        print("not verified by apo-planner (check before opening the pull request):")
        for item in done.unverified:
            print(f"  [ ] {item}")
    return 0


def _read_tools(path: Path) -> object:
    """The --tools file's JSON; what is wrong with it names the file (and the line and column)."""
    if not path.is_file():
        raise UserError(f"--tools {path}: no such file; give a JSON file with a list of tools")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"--tools {path} is not UTF-8 text (byte offset {exc.start}); save it as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise UserError(
            f"--tools {path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None


def format_name(text: str) -> str:
    """`--format`: 'auto' or a registered trajectory format (an unknown name gets a did-you-mean)."""
    from apo_planner.formats import FORMATS

    if text != "auto" and text not in FORMATS:
        raise argparse.ArgumentTypeError(FORMATS.unknown(text).replace(" (valid: ", " (valid: auto, "))
    return text


def cmd_formats(args: argparse.Namespace) -> int:
    """Every registered trajectory format, how it is recognised and where its page is."""
    from apo_planner.formats import FORMATS, markdown_table

    if args.markdown:
        print(markdown_table(), end="")
        return 0
    width = max(len(name) for name in FORMATS.names()) + 2
    print("trajectory formats (build --format NAME; default auto: found from the first rows' content)")
    for name, fmt in FORMATS:
        print(f"  {name:<{width}}{fmt.detection}\n  {'':<{width}}docs: {fmt.docs_page}")
    print(
        "Tool catalogs, in any format and in `plan --tools`: OpenAI tools, bare functions, Anthropic input_schema "
        "or MCP inputSchema tools (a tools/list result too): docs/formats/mcp.md"
    )
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from apo_planner.plan_grammar import GrammarLimits
    from apo_planner.planner import Planner
    from apo_planner.tools import normalize_tools

    tools = normalize_tools(_read_tools(Path(args.tools)))
    if not tools:
        raise UserError(
            f"--tools {args.tools} holds no tool definitions: write a JSON list of OpenAI-style or MCP tools "
            "(or an MCP tools/list result)"
        )
    folder = Path(args.model)
    if not args.base_url and folder.is_dir() and not (folder / "config.json").is_file():
        inside = sorted(str(c.parent) for c in folder.glob("*/config.json"))
        hint = f"; did you mean {' or '.join(inside)}?" if inside else "; give a merged model folder or a Hub id"
        raise UserError(f"--model {args.model}: not a model folder (no config.json){hint}")
    limits = GrammarLimits(max_steps=args.max_steps)
    constrained = not args.unconstrained
    if args.base_url:
        planner = Planner.from_endpoint(
            args.base_url,
            args.model,
            tokenizer=args.tokenizer,
            constrained=constrained,
            limits=limits,
            send_grammar=not args.no_server_grammar,
            api=args.api,
        )
    else:
        planner = Planner.from_pretrained(args.model, revision=args.revision, constrained=constrained, limits=limits)
    result = planner.plan_with_details(args.query, tools)
    if result.error and result.error.startswith("prompt_too_long"):
        raise UserError(f"{result.error}; give fewer tools (--tools) or a model with a longer context")
    if result.plan is None:
        print(f"no plan: {result.error}\nraw output:\n{result.text}", file=sys.stderr)
        return 1
    print(result.plan.model_dump_json(indent=2) if args.json else result.plan.to_text())
    return 0


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from apo_planner.tiny import make_tiny_model

    print(f"wrote a tiny random Qwen3 model to {make_tiny_model(args.output, seed=args.seed)}")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    """build -> train -> merge -> eval -> cards/stage -> push (with --push); unchanged stages skip."""
    recipe = _recipe(args, [])
    _point_benchmark(recipe)
    from rich.console import Console
    from rich.table import Table

    from apo_planner.entry.release import run_release

    summary = run_release(recipe, push=args.push)
    table = Table(
        title=f"release ({recipe.name}): ran {', '.join(summary.ran) or 'nothing'}"
        + (f"; skipped {', '.join(summary.skipped)}" if summary.skipped else "")
    )
    table.add_column("artifact")
    table.add_column("where", overflow="fold")  # a path cut short with "…" tells nobody where it is
    for name, where in summary.artifacts.items():
        table.add_row(name, where)
    for category, coverage in summary.coverage.items():  # every planner number is only as good as this
        table.add_row(f"plan coverage: {category}", str(coverage))
    table.add_row("training pairs over max_length", summary.overlong)
    for metric, line in summary.plan_generation.items():  # what the planner learned, without any benchmark
        table.add_row(f"held-out plans, base -> merged: {metric}", line)
    for sentence in summary.differences:
        table.add_row("planner vs executor alone", sentence)
    console = Console()
    (console if console.is_terminal else Console(width=160)).print(table)  # a log keeps whole sentences
    if not args.push:
        print("release: staged only (nothing pushed); `make release PUSH=1` uploads with HF_TOKEN")
    return 0


def cmd_cards(args: argparse.Namespace) -> int:
    from apo_planner.artifacts import DatasetDir, EvalDir, TrainDir
    from apo_planner.cards.stage import stage

    recipe = _recipe(args, [])
    staged = stage(
        recipe.release,
        DatasetDir(Path(recipe.build.output)),
        TrainDir(Path(recipe.train.output)),
        EvalDir(Path(recipe.eval.output)),
        recipe.model_dump(mode="json"),  # published with each repo, so what is on the Hub can be rebuilt
    )
    for folder in (staged.dataset, staged.adapter, staged.model):
        print(f"staged {folder} (card: {folder / 'README.md'})")
    return 0


class ServedRole(NamedTuple):
    config: ServerConfig
    model: str
    workdir: Path  # where its log goes: where its stage writes it
    revision: str | None = None  # the recipe's; `serve` pins it to a commit as the role's stage does


def served_roles(recipe: Recipe) -> dict[str, ServedRole]:
    """Every server the recipe's stages start: the build's synthesizer, the eval stage's executor and planner."""
    from apo_planner.evaluation.run import served_roles as eval_roles

    roles = {}
    llm = recipe.build.llm
    if recipe.build.synthesizer == "llm" and getattr(llm, "server", None) is not None:
        roles["synthesizer"] = ServedRole(llm.server, llm.model, llm.server_workdir(), llm.revision)
    output = Path(recipe.eval.output)  # the eval stage logs its servers in its output folder
    roles |= {
        role: ServedRole(config, model, output, revision)
        for role, (config, model, revision) in eval_roles(recipe.eval).items()
    }
    return roles


def cmd_serve(args: argparse.Namespace) -> int:
    """One role's server exactly as its stage starts it, until Ctrl-C (for `make serve-*`)."""
    import threading

    recipe = _recipe(args, [])
    _point_benchmark(recipe)
    from apo_planner.serving import serve

    roles = served_roles(recipe)
    if args.role not in roles:
        why = {
            "synthesizer": "build.synthesizer is not llm, or build.llm.server is not set (base_url is a server "
            "someone else runs)",
        }.get(args.role, "")
        raise RecipeError(f"the recipe serves no {args.role} ({why}); it serves {', '.join(roles)}")
    config, model, workdir, revision = roles[args.role]
    if args.engine:
        config = config.model_copy(update={"engine": args.engine})
    from apo_planner.pinning import SHA, pin_served

    key = "build.llm.revision" if args.role == "synthesizer" else f"eval.{args.role}.revision"
    revision = pin_served(model, revision or "main", config.engine != "external", key)  # as its stage pins it
    revision = revision if SHA.match(revision) else None
    if args.role == "executor":
        from apo_planner.evaluation.run import prepare_executor

        prepare_executor(recipe.eval.executor)
    with serve(config, model, workdir, args.role, revision=revision) as base_url:
        log = workdir / f"{args.role}.log"
        print(f"{args.role} serving {model} at {base_url} (log: {log}); Ctrl-C stops it", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print(f"{args.role}: stopped")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Every problem a release would meet late (token, namespaces, source, lengths, GPUs, engines, disk)."""
    from apo_planner.entry.check import run_checks

    recipe = _recipe(args, [])
    _point_benchmark(recipe, required=False)  # the categories check imports the benchmark's package
    report = run_checks(recipe, push=args.push)
    for note in report.notes:
        print(f"  {note}")
    for problem in report.problems:
        print(f"apo-planner check: problem: {problem}", file=sys.stderr)
    print(f"check ({recipe.name}): " + ("ok" if report.ok else f"{len(report.problems)} problem(s)"))
    return 0 if report.ok else 2


def cmd_recipe(args: argparse.Namespace) -> int:
    print(json.dumps(_recipe(args, []).model_dump(mode="json"), indent=2))
    return 0


class _Subcommands:
    """`add_subparsers()` whose every subcommand also takes the common options (--debug, -v, --log-level)."""

    def __init__(self, actions: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
        self._actions = actions
        self._common = common

    def add_parser(self, name: str, **kwargs: object) -> argparse.ArgumentParser:
        return self._actions.add_parser(name, parents=[self._common], **kwargs)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand with its flags; recipe-driven ones share `--recipe` and `--set`."""
    common = argparse.ArgumentParser(add_help=False)  # accepted before and after the subcommand
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="print an error's traceback")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug messages")
    common.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default=argparse.SUPPRESS, help="default INFO"
    )
    parser = argparse.ArgumentParser(
        prog="apo-planner",
        description="Build, train, evaluate and release an efficiency-trained tool-calling planner.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"apo-planner {__version__}")
    sub = _Subcommands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"), common)

    p = sub.add_parser("build", help="trajectories -> preference dataset (parquet + stats.json)")
    _add_recipe_args(p)
    p.add_argument("--source", help="Hub dataset id, or local .jsonl/.json/.parquet files / glob / directory")
    p.add_argument(
        "--format",
        type=format_name,
        metavar="NAME",
        help="trajectory format, as `apo-planner formats` lists them (default auto: found from the rows' content)",
    )
    p.add_argument("--synthesizer", choices=["llm", "rule"], help="who selects the calls to keep")
    p.add_argument("--output", help="dataset directory to write")
    p.add_argument("--limit", type=int, help="read at most N records")
    p.add_argument("--num-proc", type=int, help="worker processes for abstraction")
    p.add_argument(
        "--shard",
        metavar="I/N|auto",
        help="build only shard I of N (0-based) into OUTPUT/shards/; auto: from a Slurm job array "
        "(SLURM_ARRAY_TASK_ID/COUNT) or APO_SHARD=I/N",
    )
    p.add_argument("--merge-shards", action="store_true", help="finalize OUTPUT from all its shards")
    p.add_argument(
        "--push-to-hub",
        metavar="REPO_ID",
        help="upload the dataset folder and tag its version (token from HF_TOKEN or `hf auth login`)",
    )
    p.add_argument("--private", action="store_true", help="create the Hub repo as private")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("train", help="APO (TRL DPOTrainer) with a LoRA adapter -> OUTPUT/adapter, metrics.json")
    _add_recipe_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("merge", help="merge the adapter into the base -> OUTPUT/merged (+ preference accuracy)")
    _add_recipe_args(p)
    p.add_argument("--adapter", help="adapter dir (default: train.output/adapter)")
    p.add_argument("--output", help="merged model dir (default: train.output/merged)")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser(
        "eval", help="executor alone vs executor + planner on the recipe's benchmark (its generation + checker)"
    )
    _add_recipe_args(p)
    p.add_argument("--categories", help="comma-separated categories or groups of the benchmark (default: recipe)")
    p.add_argument("--limit", type=int, help="first N entries per category (quick runs)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("submission", help="write a leaderboard pull-request folder (BFCL) from an eval's results")
    _add_recipe_args(p)
    p.add_argument(
        "--allow-partial", action="store_true", help="write a draft from a limited (eval.limit) or smoke evaluation"
    )
    p.set_defaults(func=cmd_submission)

    p = sub.add_parser("plan", help="ask a planner for a plan: --model M --query Q --tools tools.json")
    p.add_argument("--model", required=True, help="merged planner: local dir or Hub id (served name with --base-url)")
    p.add_argument("--query", required=True)
    p.add_argument(
        "--tools",
        required=True,
        help="JSON file: a list of tools (OpenAI style, bare functions, MCP inputSchema) or an MCP tools/list result",
    )
    p.add_argument("--base-url", help="OpenAI-compatible endpoint serving the planner (e.g. vllm serve)")
    p.add_argument("--tokenizer", help="tokenizer for --base-url (default: --model)")
    p.add_argument("--revision", default=None, help="Hub revision of --model")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument(
        "--unconstrained", action="store_true", help="decode freely instead of under the catalog's plan grammar"
    )
    p.add_argument("--max-steps", type=int, default=8, help="most steps a constrained plan may have (default 8)")
    p.add_argument(
        "--no-server-grammar",
        action="store_true",
        help="with --base-url: do not send the grammar (for servers without vLLM's structured_outputs)",
    )
    p.add_argument(
        "--api",
        choices=["auto", "vllm", "openai"],
        default="auto",
        help="with --base-url: what the server understands (vllm: every sampling field and structured_outputs; "
        "openai: the OpenAI API's fields only, e.g. transformers serve; default vllm)",
    )
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("tiny-model", help="write a tiny random Qwen3 model (offline smoke runs, tests)")
    p.add_argument("--output", required=True, help="model directory to write")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_tiny_model)

    p = sub.add_parser("release", help="build -> train -> merge -> eval -> cards/stage (-> push)")
    _add_recipe_args(p)
    p.add_argument("--push", action="store_true", help="upload the staged repos and tag them (HF_TOKEN)")
    p.set_defaults(func=cmd_release)

    p = sub.add_parser("cards", help="render the three cards from the run's artifacts and stage the repos")
    _add_recipe_args(p)
    p.set_defaults(func=cmd_cards)

    p = sub.add_parser("check", help="preflight: list every problem a release would meet, in seconds")
    _add_recipe_args(p)
    p.add_argument("--push", action="store_true", help="also check the token and write access for pushing")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("serve", help="start one role's server as its stage would, until Ctrl-C")
    _add_recipe_args(p)
    p.add_argument("role", choices=["synthesizer", "executor", "planner"], help="which served role of the recipe")
    from apo_planner.serving import ServerConfig as Served

    p.add_argument(
        "--engine",
        choices=[e for e in get_args(Served.model_fields["engine"].annotation) if e != "external"],
        help="serve it with this engine instead of the recipe's (transformers: apo-planner's CPU server)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("formats", help="list the trajectory formats build reads, how each is detected, its docs")
    p.add_argument("--markdown", action="store_true", help="print the table docs/formats/index.md holds")
    p.set_defaults(func=cmd_formats)

    p = sub.add_parser("recipe", help="print the resolved recipe (after overrides) as JSON")
    _add_recipe_args(p)
    p.set_defaults(func=cmd_recipe)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Every failure ends in one line `apo-planner <cmd>: error: ...`: exit 2 for what the user can fix,
    1 for a bug (its traceback in a log file), 130 for Ctrl-C; `--debug` prints the traceback as well."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    for option, default in (("debug", False), ("verbose", False), ("log_level", None)):
        setattr(args, option, getattr(args, option, default))  # given before or after the subcommand, or not
    logs.setup(args.log_level or ("DEBUG" if args.verbose else "INFO"))
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        if args.command in EXTRAS:
            require_extra(EXTRAS[args.command][0], *EXTRAS[args.command][1], what=f"apo-planner {args.command}")
        return handler(args)
    except KeyboardInterrupt:
        print(f"apo-planner {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        message, status = failures.report(args.command, exc, getattr(args, "model", None))
        print(f"apo-planner {args.command}: error: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
