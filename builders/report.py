"""Human-readable build statistics (the machine-readable copy is stats.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def print_build_stats(stats: dict[str, Any], output: Path, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"build: {stats['source']} -> {output}", show_header=True)
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("records read", str(stats["records_read"]))
    per_format = stats.get("formats") or {}
    if len(per_format) > 1 or stats.get("format") not in per_format:
        for name, count in per_format.items():
            table.add_row(f"  read as {name}", str(count))
    for kind, count in (stats.get("skipped_content") or {}).items():
        table.add_row(f"  content skipped: {kind}", str(count))
    for reason, count in stats["dropped"].items():
        table.add_row(f"  dropped: {reason}", str(count))
    table.add_row("trajectories", str(stats["trajectories"]))
    pairing = stats.get("result_pairing") or {}
    if any(pairing.values()):
        table.add_row("  results paired by id / by order", f"{pairing.get('by_id', 0)} / {pairing.get('by_order', 0)}")
        for name in ("orphan_result", "no_result"):
            if pairing.get(name):
                table.add_row(f"  {name.replace('_', ' ')}", str(pairing[name]))
    per_record = stats.get("trajectories_per_record", {})
    if per_record:
        spread = ", ".join(f"{n}: {count}" for n, count in per_record.items())
        table.add_row("  trajectories per source row", f"{stats['avg_trajectories_per_record']:.2f} ({spread})")
    for name, count in stats.get("synthesis", {}).items():
        table.add_row(f"  synthesis: {name}", str(count))
    throughput = stats.get("throughput")
    for rates in throughput.get("shards", [throughput]) if throughput else []:
        where = f"shard {rates['shard'][0]}: " if rates.get("shard") else ""
        table.add_row(
            f"  synthesis {where}requests/s, tokens/s",
            f"{rates['requests_per_s']}, {rates['tokens_per_s']} over {rates['seconds']} s",
        )
        servers = rates.get("servers") or {}
        for url, counts in servers.items() if len(servers) > 1 else ():
            table.add_row(
                f"    {url}", f"{counts['requests']} requests, {counts['failed']} failed, out {counts['taken_out']}x"
            )
    for reason, count in stats["selection_rejected"].items():
        table.add_row(f"  no pair: {reason}", str(count))
    for reason, count in stats["removed_calls_by_reason"].items():
        table.add_row(f"  calls removed: {reason}", str(count))
    agreement = stats.get("agreement")
    if agreement:
        table.add_row("  agreement with the rules: trajectories", str(agreement["trajectories"]))
        table.add_row(
            "  removals precision / recall vs rules",
            f"{_share(agreement['precision'])} / {_share(agreement['recall'])}",
        )
        for reason, count in agreement["missed_by_rule"].items():
            table.add_row(f"    kept, rules remove: {reason}", str(count))
        for kind, count in agreement["over_removed_by_kind"].items():
            table.add_row(f"    removed, rules keep: {kind}", str(count))
    sources = stats.get("answer_sources_kept") or {}
    if sources.get("pairs"):
        unchecked = sources.get("unchecked") and f" ({sources['unchecked']} dropped free-text results, unchecked)"
        unchecked = unchecked or ""
        table.add_row("  pairs keeping every answer source", f"{sources['kept']} of {sources['pairs']}{unchecked}")
    decontamination = stats.get("decontamination", {})
    if decontamination.get("enabled"):
        against = ", ".join(decontamination.get("benchmarks") or {})
        table.add_row(
            f"  decontaminated ({decontamination['ngram']}-gram vs {against})", str(decontamination["removed"])
        )
    table.add_row("pairs", str(stats["pairs"]))
    for name, dist in stats.get("lengths", {}).items():
        if dist.get("n"):
            table.add_row(
                f"  {name.replace('_', ' ')} p50 / p95 / max", f"{dist['p50']} / {dist['p95']} / {dist['max']}"
            )
    for key, cut in stats.get("length_filters", {}).items():
        table.add_row(f"  removed by {key}={cut['limit']}", str(cut["removed"]))
    table.add_row("avg calls chosen / rejected", f"{stats['avg_calls_chosen']:.3f} / {stats['avg_calls_rejected']:.3f}")
    if "splits" in stats:
        table.add_row("splits", ", ".join(f"{k} {v}" for k, v in stats["splits"].items()))
        table.add_row("version / fingerprint", f"{stats['dataset_version']} / {stats['fingerprint'][:16]}")
    if stats.get("review"):
        table.add_row("review sample", f"{stats['review']['size']} pairs in {output / stats['review']['file']}")
    if "shard" in stats:
        table.add_row("shard", "{}/{} (finish with --merge-shards)".format(*stats["shard"]))
    table.add_row("elapsed", f"{stats['elapsed_s']} s")
    console.print(table)
