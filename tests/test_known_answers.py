"""The statistics against answers known by construction: a scripted executor (the injected plan's calls, the
ground truth alone for a chosen set of entries, a wrong call otherwise) and a scripted planner (the ground
truth for a chosen subset, a wrong plan for the rest), through bfcl-eval's own generation and checker.

Per category of 8 entries, by index: the executor alone is right on {0, 1, 2}, the planner on {0, 1, 3, 4, 5,
6}; so the planner fixes 3, 4, 5, 6 (k = 4 per category) and breaks 2 (m = 1), and 7 fails both."""

import json
import re

import pytest
from scipy.stats import binomtest

from apo_planner.artifacts import Comparison, EvalDir
from apo_planner.benchmarks import BENCHMARKS
from apo_planner.entry.recipe import load_recipe
from apo_planner.evaluation.run import evaluate
from apo_planner.stats import paired_bootstrap
from tests.support.loopback import OpenAIStub
from tests.support.scripted import PLANNER_MODEL, ScriptedExecutor, ScriptedPlanner, fc_answer, planner_stub_sets

CATEGORIES = ["simple_java", "multiple", "parallel_multiple", "live_parallel_multiple"]
LIMIT = 8
ALONE_RIGHT = {0, 1, 2}
PLANNER_RIGHT = {0, 1, 3, 4, 5, 6}
K = len(PLANNER_RIGHT - ALONE_RIGHT) * len(CATEGORIES)  # fixed: 16
M = len(ALONE_RIGHT - PLANNER_RIGHT) * len(CATEGORIES)  # broken: 4


def _entries(category):
    from bfcl_eval.utils import load_dataset_entry

    return load_dataset_entry(category)[:LIMIT]


def _question(entry):
    return next(m["content"] for m in entry["question"][0] if m["role"] == "user")


def _scripted(categories=CATEGORIES):
    bfcl = BENCHMARKS.get("bfcl")
    alone, plans = {}, {}
    for category in categories:
        for i, entry in enumerate(_entries(category)):
            truth = bfcl.oracle_plan(entry)
            if i in ALONE_RIGHT:
                alone[_question(entry)] = fc_answer([(s.tool, dict(s.arguments)) for s in truth.steps])
            if i in PLANNER_RIGHT:
                plans[_question(entry)] = truth
    return ScriptedExecutor(alone=alone), ScriptedPlanner(plans)


def _config(tmp_path, stub, tiny, **extra):
    sets = {
        "eval.output": tmp_path / "eval",
        "eval.limit": LIMIT,
        "eval.categories": "[" + ",".join(CATEGORIES) + "]",
        "eval.executor.server.engine": "external",
        "eval.executor.server.base_url": stub.base_url,
        "eval.executor.model_path": tiny,
        "eval.executor.tiny_model": False,
        "eval.executor.prompt_handler": "null",
        "eval.executor.num_threads": 2,
        "eval.diagnostics.placebo": "true",
        "eval.diagnostics.oracle": "true",
        "eval.diagnostics.plan_only": "true",
        **extra,
    }
    return load_recipe(None, [f"{k}={v}" for k, v in sets.items()]).eval


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory, tiny):
    tmp_path = tmp_path_factory.mktemp("known")
    executor, planner = _scripted()
    with OpenAIStub(executor, model=str(tiny)) as stub, OpenAIStub(planner, model=PLANNER_MODEL) as planned:
        config = _config(tmp_path, stub, tiny, **planner_stub_sets(planned))
        result = evaluate(config)
    return config, result, EvalDir(result.output).comparison(), stub


def _passed(comparison, arm, run=0):
    return {(o.category, o.id): o.passed for o in comparison.runs[run].entries[arm]}


def _index(entry_id):
    return int(re.search(r"_(\d+)(?:-\d+-\d+)?$", entry_id).group(1))


def test_each_arm_scores_what_its_construction_implies(scripted_run):
    _, _, comparison, _ = scripted_run
    n = LIMIT * len(CATEGORIES)
    expected = {
        "fc": ALONE_RIGHT,
        "planner": PLANNER_RIGHT,
        "oracle": set(range(LIMIT)),
        "plan_only": PLANNER_RIGHT,  # the planner's own plans, scored with no executor
    }
    for arm, right in expected.items():
        passed = _passed(comparison, arm)
        assert len(passed) == n, arm
        assert {key for key, ok in passed.items() if ok} == {key for key in passed if _index(key[1]) in right}, arm
        pooled = comparison.arm_stats(arm, "pooled")
        assert pooled.correct == len(right) * len(CATEGORIES) and pooled.entries == n
    # the placebo: as many steps as the planner's plan, catalog tools in catalog order, no arguments; the checker
    # accepts none of these answers (every function here has required parameters)
    assert not any(_passed(comparison, "placebo").values())
    assert comparison.arm_stats("placebo", "pooled").planned == n


def test_the_placebo_plan_is_the_catalog_in_order_as_long_as_the_planners(scripted_run):
    _, result, comparison, _ = scripted_run
    root = result.output / "bfcl" / "result"
    models = {a.name: a.model for a in comparison.arms}
    for category in CATEGORIES:
        rows = {}
        for arm in ("planner", "placebo"):
            path = next((root / models[arm].replace("/", "_")).glob(f"**/BFCL_v4_{category}_result.json"))
            rows[arm] = {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}
        for entry in _entries(category):
            names = [f["name"] for f in entry["function"]]
            steps = rows["planner"][entry["id"]]["planner"]["steps"]
            placebo = rows["placebo"][entry["id"]]
            expected = fc_answer([(names[i % len(names)], {}) for i in range(steps)])
            assert placebo["result"] == expected and placebo["planner"]["steps"] == steps


def test_the_oracle_arm_scores_exactly_what_the_ground_truth_anchor_scores(scripted_run, tmp_path):
    from bfcl_eval.utils import is_java, load_ground_truth_entry

    from apo_planner.benchmarks.bfcl import score
    from apo_planner.benchmarks.bfcl.ground_truth import ground_truth_output
    from apo_planner.benchmarks.bfcl.handler import register
    from apo_planner.benchmarks.bfcl.results import read_failures, registry_dir

    _, _, comparison, _ = scripted_run
    anchor = register("Qwen/Qwen3-30B-A3B-Instruct-2507-FC").baseline
    from bfcl_eval.utils import load_dataset_entry

    passed = {}
    for category in CATEGORIES:
        prompts = load_dataset_entry(category, include_prereq=False, include_language_specific_hint=False)[:LIMIT]
        answers = {g["id"]: g["ground_truth"] for g in load_ground_truth_entry(category)}
        folder = tmp_path / "result" / registry_dir(anchor) / ("live" if category.startswith("live") else "non_live")
        folder.mkdir(parents=True, exist_ok=True)
        lines = [
            json.dumps(
                {"id": e["id"], "result": ground_truth_output(answers[e["id"]], e["function"], is_java(category))}
            )
            for e in prompts
        ]
        (folder / f"BFCL_v4_{category}_result.json").write_text("\n".join(lines) + "\n")
    score([anchor], CATEGORIES, tmp_path, partial=True)
    for category in CATEGORIES:
        failures = read_failures(tmp_path, anchor, category)
        for e in _entries(category):
            passed[(category, e["id"])] = e["id"] not in failures
    assert _passed(comparison, "oracle") == passed


def test_k_fixed_and_m_broken_give_the_exact_table_p_value_and_a_reproducible_interval(scripted_run):
    config, _, comparison, _ = scripted_run
    pair = comparison.pair("planner", "fc", "pooled")
    n = LIMIT * len(CATEGORIES)
    both = len(PLANNER_RIGHT & ALONE_RIGHT) * len(CATEGORIES)
    assert (pair.entries, pair.both, pair.only_a, pair.only_b, pair.neither) == (n, both, K, M, n - both - K - M)
    assert pair.p_value == float(f"{binomtest(K, K + M, 0.5).pvalue:.4g}") == 0.01182
    assert pair.significant and pair.delta_accuracy.value == round(100 * (K - M) / n, 2)
    # the interval: the same seed gives the same interval, stratified by category, and it holds the true difference
    fc, planner = comparison.runs[0].entries["fc"], comparison.runs[0].entries["planner"]
    again = paired_bootstrap(
        [float(o.passed) for o in planner],
        [float(o.passed) for o in fc],
        strata=[o.category for o in fc],
        resamples=config.statistics.resamples,
        seed=config.statistics.seed,
    )
    assert (round(100 * again.low, 2), round(100 * again.high, 2)) == (
        pair.delta_accuracy.low,
        pair.delta_accuracy.high,
    )
    assert pair.delta_accuracy.low < 100 * (K - M) / n < pair.delta_accuracy.high
    assert pair.delta_accuracy.low > 0  # 16 vs 4 discordant: distinguishable, and the interval agrees
    # per category, 4 vs 1: p = 0.375, not distinguishable, and the sentence says so
    per = comparison.pair("planner", "fc", "multiple")
    assert (per.only_a, per.only_b, per.p_value, per.significant) == (4, 1, 0.375, False)
    assert "not distinguishable" in per.sentence and "+3 entries of 8" in per.sentence and "p=0.375" in per.sentence
    # the planner's plans alone score what the planner arm scores: nothing is lost between plan and executor
    same = comparison.pair("planner", "plan_only", "pooled")
    assert (same.only_a, same.only_b, same.p_value) == (0, 0, 1.0)


def test_changes_list_every_fixed_and_broken_entry_with_its_question_plan_outputs_and_error(scripted_run):
    _, result, comparison, _ = scripted_run
    changes = EvalDir(result.output).changes()
    (fc,) = changes.baselines
    assert (len(fc.fixed), len(fc.broken)) == (K, M) and comparison.changes == {"fc": {"fixed": K, "broken": M}}
    assert {_index(e.id) for e in fc.fixed} == PLANNER_RIGHT - ALONE_RIGHT
    broken = fc.broken[0]
    assert broken.failing == "planner" and "scripted_wrong_argument" in broken.plan and broken.error
    assert broken.question and "scripted_wrong_argument" in broken.planner_output
    assert fc.fixed[0].error and "scripted_wrong_call" in fc.fixed[0].baseline_output
    markdown = EvalDir(result.output).changes_markdown.read_text()
    assert f"{K} fixed, {M} broken" in markdown and markdown.count("#### `") == K + M


def test_the_report_reads_as_the_decomposition_with_every_difference_interval_and_p(scripted_run):
    _, result, comparison, _ = scripted_run
    markdown = (result.output / "comparison.md").read_text()
    for pair in comparison.statistics.pairs:
        assert pair.sentence in markdown
        row = f"| {pair.scope} | {pair.entries} | {pair.both} | {pair.only_a} | {pair.only_b} | {pair.neither} |"
        assert f"{row} {pair.p_value} | {pair.delta_accuracy.signed()} |" in markdown
    steps = [line.split(" | ")[1] for line in markdown.splitlines() if re.match(r"^\| ([1-6]|beside) \| ", line)]
    assert steps == ["executor alone (FC)", "+ placebo plan", "+ planner", "+ oracle plan", "plan only (no executor)"]
    assert "[changes.md](changes.md)" in markdown


def test_the_plot_draws_every_planner_accuracy_with_its_interval(scripted_run, tmp_path):
    from apo_planner.evaluation.compare import plot

    _, _, comparison, _ = scripted_run
    drawn = plot(comparison, tmp_path / "plot.png")
    planner = {d["scope"]: d["accuracy"] for d in drawn if d["arm"] == "planner"}
    assert set(planner) == set(CATEGORIES)
    for scope, interval in planner.items():
        assert interval == comparison.arm_stats("planner", scope).accuracy and interval.low < interval.high


@pytest.mark.slow
def test_repeats_run_every_arm_again_with_its_own_seed_and_report_the_spread(tmp_path, tiny):
    executor, planner = _scripted(["multiple"])
    sets = {"eval.categories": "[multiple]", "eval.limit": 4, "eval.repeats": 2}
    with OpenAIStub(executor, model=str(tiny)) as stub, OpenAIStub(planner, model=PLANNER_MODEL) as planned:
        config = _config(tmp_path, stub, tiny, **sets, **planner_stub_sets(planned))
        result = evaluate(config)
    comparison = Comparison.model_validate(result.comparison)
    assert [(r.run, r.seed) for r in comparison.runs] == [(1, 0), (2, 1)]
    assert sorted({r["seed"] for r in stub.requests}) == [0, 1]  # every executor request carried its run's seed
    assert (result.output / "bfcl-run2" / "score").is_dir()
    spread = {(r.what, r.scope): r for r in comparison.statistics.repeats}
    assert spread[("planner", "pooled")].values == [75.0, 75.0]  # a scripted executor has no run-to-run noise
    assert spread[("planner - fc", "pooled")].values == [0.0, 0.0]  # 3 gained, 2 lost: net 0 of 4
    assert "## Repeats: run-to-run spread" in (result.output / "comparison.md").read_text()


METRICS = {
    "loss_type": "apo_zero",
    "steps": 2,
    "wall_time_s": 1.0,
    "tokens_approx": 10,
    "train": {"train_loss": 0.5},
}


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    from apo_planner.artifacts import TrainDir
    from apo_planner.training.apo import trainer_arguments

    root = tmp_path_factory.mktemp("train")
    config = load_recipe(None).train
    provenance = {
        "dataset": {"id": "ds", "version": "0.1.0", "fingerprint": "f" * 64},
        "base_model": {"id": "tiny-planner", "revision": "local"},
        "recipe_sha256": "a" * 64,
        "train_config": config.model_dump(mode="json"),
        "trainer_args": json.loads(trainer_arguments(config, has_eval=True).to_json_string()),
        "packages": {"trl": "1.16.0", "transformers": "5.23.0", "peft": "0.21.2"},
        "git_commit": "0123abcd",
    }
    (root / "metrics.json").write_text(json.dumps(METRICS))
    (root / "training_provenance.json").write_text(json.dumps(provenance))
    return TrainDir(root)


def _card(train_dir, result, recipe=None):
    from apo_planner.cards.render import model_card

    return str(
        model_card(
            train_dir,
            EvalDir(result.output),
            "org/planner",
            adapter=False,
            dataset_repo="org/plans",
            model_repo="org/planner",
            adapter_repo="org/planner-lora",
            license_id="apache-2.0",
            version="0.1.0",
            recipe=recipe,
        )
    )


def _rows(text, first_cell):
    """The cells of every Markdown table row of `text` whose first cell is `first_cell`."""
    return [
        [c.strip() for c in line.strip().strip("|").split(" | ")]
        for line in text.splitlines()
        if line.startswith(f"| {first_cell} |")
    ]


def test_every_number_in_the_model_card_equals_comparison_json(scripted_run, train_dir):
    _, result, _, _ = scripted_run
    data = json.loads((result.output / "comparison.json").read_text())  # the file itself, not the model
    card = _card(train_dir, result)
    stats = data["statistics"]
    arms = [a["name"] for a in data["arms"]]
    header = next(line for line in card.splitlines() if line.startswith("| category | entries |"))
    labels = {a["name"]: a["label"] for a in data["arms"]}
    assert header.split(" | ")[2:-1] == [labels[a] for a in arms]  # one column per arm, in order
    for scope in [*CATEGORIES, "pooled"]:
        (row,) = [r for r in _rows(card, scope) if len(r) == len(arms) + 3]
        for arm, cell in zip(arms, row[2:-1], strict=True):
            (s,) = [s for s in stats["arms"] if s["arm"] == arm and s["scope"] == scope]
            acc = s["accuracy"]
            assert cell == f"{acc['value']} [{acc['low']}, {acc['high']}] ({s['avg_calls']})", (scope, arm)
    listed = 0
    for p in stats["pairs"]:
        rows = [r for r in _rows(card, f"{labels[p['a']]} − {labels[p['b']]}") if r[1] == p["scope"]]
        if p["scope"] != "pooled" and not (p["a"] == "planner" and p["b"] == "fc"):
            assert not rows
            continue
        (row,) = rows
        d = p["delta_accuracy"]
        assert row[2:] == [
            f"{p['only_a']} / {p['only_b']}",
            f"{p['p_value']}",
            f"{d['value']:+g} [{d['low']:+g}, {d['high']:+g}]",
            "{:+g} [{:+g}, {:+g}]".format(*(p["delta_calls"][k] for k in ("value", "low", "high"))),
        ]
        listed += 1
    assert listed == len(CATEGORIES) + 6  # planner - fc per category, and every pair pooled
    # the model-index numbers are the same as the table's
    from huggingface_hub import ModelCard

    for entry in ModelCard(card).data.eval_results:
        if entry.metric_type == "accuracy":
            (s,) = [s for s in stats["arms"] if s["arm"] == "planner" and s["scope"] == entry.dataset_config]
            assert entry.metric_value == s["accuracy"]["value"]
    assert "[bfcl_changes.md](bfcl_changes.md)" in card and f"{K} fixed and {M} broken" in card


def test_the_card_names_the_executor_that_ran_and_links_only_hub_ids(scripted_run, train_dir, tiny):
    _, result, _, _ = scripted_run
    recipe = load_recipe(None).model_dump(mode="json")
    card = _card(train_dir, result, recipe)
    assert (
        f"the local model folder `{tiny}`" in card
        and "`QwenFCHandler` (its `Qwen/Qwen3-30B-A3B-Instruct-2507-FC`" in card
    )
    assert (
        "-Max" not in card and "huggingface.co/tiny-planner" not in card and "huggingface.co/" + str(tiny) not in card
    )
    assert "the local model `tiny-planner` (a folder, not a Hub model)" in card
    assert "`build.filters.multi_turn: each`" in card and "single-turn trajectories" not in card
    assert "(`eval.repeats: 1`)" in card


def test_the_pr_description_shows_the_interval_and_p_next_to_each_planner_number(scripted_run, tmp_path):
    from apo_planner.evaluation.submission import Pinned, export

    config, result, comparison, _ = scripted_run
    pinned = Pinned(
        "me/planner+exec-FC", "planner (FC)", "me/planner", "v1", "me", "https://huggingface.co/me/planner", "mit"
    )
    folder = export(
        config.model_copy(update={"submission": config.submission.model_copy(update={"output": str(tmp_path)})}),
        pinned,
        allow_partial=True,
    ).folder
    text = (folder / "PR_DESCRIPTION.md").read_text()
    for scope in [*CATEGORIES, "pooled"]:
        planner, pair = comparison.arm_stats("planner", scope), comparison.pair("planner", "fc", scope)
        (row,) = _rows(text, scope)
        assert row[2] == f"{planner.accuracy} ({planner.avg_calls})"
        assert row[3:5] == [pair.delta_accuracy.signed(), str(pair.p_value)]
