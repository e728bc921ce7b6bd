"""Smallest possible fixes for veRL 0.9.1 bugs, applied from the plugin and guarded by veRL's version.

Each module fixes one thing, names the veRL code it covers, and has a test that fails without it.
"""

PATCHED_VERL_VERSION = "0.9.1"


def verl_version_matches() -> bool:
    """Our patches target exactly veRL 0.9.1; on another version they stay off (and say so in the log)."""
    import verl

    return verl.__version__ == PATCHED_VERL_VERSION


def apply_all() -> None:
    """Apply every patch (idempotent)."""
