"""Smallest possible fixes for veRL 0.9.1 bugs, applied from the plugin and guarded by veRL's version.

Each module fixes one thing, names the veRL code it covers, has a test that fails without it, and is attached
to the veRL module it changes, so it costs nothing in processes that never import that module.
"""

import logging

from verl_tor.import_hooks import call_after_import

PATCHED_VERL_VERSION = "0.9.1"

logger = logging.getLogger(__name__)


def verl_version_matches() -> bool:
    """Our patches target exactly veRL 0.9.1; on another version they stay off (and say so in the log)."""
    import verl

    return verl.__version__ == PATCHED_VERL_VERSION


def apply_all() -> None:
    """Attach every patch to the veRL module it changes (idempotent)."""
    if not verl_version_matches():
        import verl

        logger.warning(
            "verl-tor's patches target veRL %s; veRL %s is installed, so none is applied",
            PATCHED_VERL_VERSION,
            verl.__version__,
        )
        return
    from verl_tor.patches import qwen2_vl_text_only, transferqueue_position_ids

    call_after_import(qwen2_vl_text_only.TARGET_MODULE, qwen2_vl_text_only.install)
    call_after_import(transferqueue_position_ids.TARGET_MODULE, transferqueue_position_ids.install)
