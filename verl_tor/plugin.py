"""veRL plugin entry point (group ``verl.plugins`` in setup.py).

``import verl`` imports this module in every process veRL starts (driver, TaskRunner, Ray workers), so all of
our registrations and version-guarded patches happen wherever veRL code runs. Each is attached to the veRL
module it needs (``import_hooks``), so processes that never import that module pay nothing. veRL only logs
plugin errors at debug level; ``tests/test_plugin.py`` checks in a fresh process that everything registered.

``VERL_TOR_DISABLE=1`` (or ``true``/``yes``/``on``) in the environment turns all of it off: ``import verl`` then
behaves as stock veRL (no registration, no patch, no ``ray.init`` wrapper). veRL's own switch
``VERL_USE_EXTERNAL_PLUGINS=none`` does the same for every plugin. Ray workers inherit the variable only where the
shell that ran ``ray start`` (or ``main_ppo`` on a one-node run) had it.
"""

import os
import warnings
from collections.abc import Mapping

DISABLE_ENV = "VERL_TOR_DISABLE"
_OFF = frozenset({"1", "true", "yes", "on"})
_ON = frozenset({"", "0", "false", "no", "off"})


def disabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``VERL_TOR_DISABLE`` turns the plugin off; a value that is neither on nor off warns and keeps it on."""
    value = environ.get(DISABLE_ENV, "").strip().lower()
    if value not in _OFF | _ON:
        # veRL swallows exceptions from plugins (debug log only), so a warning is the loudest signal possible here.
        warnings.warn(
            f"{DISABLE_ENV}={environ[DISABLE_ENV]!r} is neither 1/true/yes/on nor 0/false/no/off: verl-tor stays on",
            stacklevel=2,
        )
    return value in _OFF


def _register_trainer(_module) -> None:
    import sys

    import verl_tor.trainer  # noqa: F401  (registers trainer modes tor_sync, tor_colocate_async, ...)

    # When code imports verl_tor.trainer itself, veRL's trainer package (and so this hook) loads while that module
    # is half executed; its own last lines register the tor_<mode> trainers, and the audit mode (a subclass of
    # tor_sync) is left to processes that load veRL first, as every veRL process does (main_ppo, its TaskRunner).
    if not getattr(sys.modules["verl_tor.trainer"].__spec__, "_initializing", False):
        import verl_tor.audit.trainer  # noqa: F401  (registers trainer mode tor_audit)


def _attach_config_checks(verl_config) -> None:
    from verl_tor import config_checks

    config_checks.install(verl_config)


def _attach_truncated_entropy(transformer_impl) -> None:
    from verl_tor import engine_truncated_entropy

    engine_truncated_entropy.install(transformer_impl)


def _load() -> None:
    from verl_tor import patches
    from verl_tor.cpu import platform as cpu_platform
    from verl_tor.cpu import rollout_hf
    from verl_tor.import_hooks import call_after_import
    from verl_tor.launch import ray_env

    patches.apply_all()
    cpu_platform.register()
    rollout_hf.register()
    # Multi-node runs (verl_tor/launch/ray_env.py): variables named in VERL_TOR_FORWARD_ENV reach every Ray process of
    # the job; the metrics file's folder exists wherever veRL's file logger runs.
    call_after_import("ray", ray_env.install_forwarding)
    call_after_import("verl.utils.tracking", ray_env.create_file_logger_folder)
    if patches.verl_version_matches():
        call_after_import("verl.trainer.ppo.v1", _register_trainer)
        call_after_import("verl.utils.config", _attach_config_checks)
        call_after_import("verl.workers.engine.fsdp.transformer_impl", _attach_truncated_entropy)


if not disabled():
    _load()
