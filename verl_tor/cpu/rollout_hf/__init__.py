"""An ``hf`` rollout backend for veRL 0.9.1: generation with HF transformers ``generate``.

For machines without vLLM (CPU runs, or a single GPU for tests); real runs keep using vLLM. It has the three parts
veRL's async rollout needs (see :mod:`verl_tor.cpu.rollout_hf.server`): a Ray server actor that answers the agent
loop's ``generate`` requests, the ``RolloutReplica`` that launches it, and the worker-side ``BaseRollout`` that
hands it the actor's weights after every step. Select it with ``actor_rollout_ref.rollout.name=hf``; options go
under ``+actor_rollout_ref.rollout.engine_kwargs.hf`` (see :class:`~verl_tor.cpu.rollout_hf.server.HFRolloutOptions`).

This module only registers the backend; the registrations run when veRL imports its rollout registries, so
processes that never touch a rollout pay nothing.
"""

from __future__ import annotations

import logging
from types import ModuleType

from verl_tor.import_hooks import call_after_import

logger = logging.getLogger(__name__)

ROLLOUT_NAME = "hf"
ADAPTER_FQN = "verl_tor.cpu.rollout_hf.server.HFServerAdapter"


def _load_replica_class() -> type:
    from verl_tor.cpu.rollout_hf.server import HFReplica

    return HFReplica


def _register_replica(replica: ModuleType) -> None:
    replica.RolloutReplicaRegistry.register(ROLLOUT_NAME, _load_replica_class)


def _register_adapter(rollout_base: ModuleType) -> None:
    # veRL 0.9.1 has no public register function for the worker-side rollout class: write its lookup table.
    rollout_base._ROLLOUT_REGISTRY[(ROLLOUT_NAME, "async")] = ADAPTER_FQN


def register() -> None:
    """Register the ``hf`` rollout with veRL's replica registry and worker-side rollout table (idempotent)."""
    call_after_import("verl.workers.rollout.replica", _register_replica)
    from verl_tor.patches import verl_version_matches

    if verl_version_matches():
        call_after_import("verl.workers.rollout.base", _register_adapter)
    else:
        logger.warning("verl-tor's hf rollout writes veRL 0.9.1's private _ROLLOUT_REGISTRY; off on this version")
