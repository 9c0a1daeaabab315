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
