"""The build stage's user errors: a source, a shard set or a synthesis server the user can fix."""

from __future__ import annotations

from apo_planner.errors import UserError


class BuildError(UserError):
    """A build that cannot run as configured; the message names the recipe key or file and the fix."""


class SourceError(BuildError):
    """A source that cannot be read at all; the message names it and says what to do."""


class ShardError(BuildError):
    """`--shard` / `--merge-shards` given something that is not one build's complete set of shards."""


class SynthesisError(BuildError):
    """The synthesizer's model cannot be reached or loaded, or serves another model."""


class NoPairs(BuildError):
    """A build in which every record was dropped: there is no dataset to write (exit 2, nothing written)."""

    def __init__(self, stats: dict, output: object) -> None:
        self.stats = stats
        reasons: dict[str, int] = {}
        for group in ("dropped", "selection_rejected"):  # records dropped, and synthesizer answers refused
            for reason, n in (stats.get(group) or {}).items():
                reasons[reason] = reasons.get(reason, 0) + n
        top = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        reasons = ", ".join(f"{reason} {n}" for reason, n in top) or "none recorded"
        super().__init__(
            f"the build produced 0 pairs from {stats.get('records_read', 0)} records read (top drop reasons: "
            f"{reasons}); nothing was written to {output}. Check build.source, build.format and build.filters"
        )
