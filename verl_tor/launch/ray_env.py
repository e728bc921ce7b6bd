"""What a run needs on whichever node Ray puts its processes: named environment variables and the metrics folder.

Ray starts the TaskRunner and the workers with the environment of the shell that ran ``ray start`` on their node
(or of ``main_ppo`` itself when ``ray.init`` starts a one-node cluster), plus the job's ``runtime_env``. A secret
exported only in the launching shell (``WANDB_API_KEY``, ``HF_TOKEN``) therefore never reaches a TaskRunner on
another node, and veRL's wandb logger fails there.

Forwarding by name: ``VERL_TOR_FORWARD_ENV=WANDB_API_KEY,HF_TOKEN`` in the environment of ``main_ppo`` adds those
variables, with their values in that process, to the ``runtime_env`` of veRL's ``ray.init`` call (the plugin wraps
``ray.init`` in that process only). The recipes set it to the names of the variables that are set, so the values
are never written on the command line, into ``command.sh``, into veRL's config (which the TaskRunner prints and
wandb stores) or into the line where ``main_ppo`` prints its ``ray.init`` arguments (the wrapper runs after it).
They do travel in the Ray job's ``runtime_env``, which whoever can read this Ray cluster's job table can see.

Never forwarded: variables whose right value differs from node to node (network interface and InfiniBand adapter
names, the GPUs of a node). Forwarding copies the launching node's value to every node, where the interface may
not exist or be the wrong one (NCCL then hangs or picks a slow path). They must be set in each node's shell before
its ``ray start``; naming one in ``VERL_TOR_FORWARD_ENV`` stops ``ray.init`` with an error naming it.

The metrics folder: veRL's ``FileLogger`` opens ``VERL_FILE_LOGGER_PATH`` without creating its folder, in the
TaskRunner; the plugin creates the folder when ``verl.utils.tracking`` is imported in a process that has the path.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

FORWARD_ENV = "VERL_TOR_FORWARD_ENV"
# Per-node values (docs/gpu-install.md, "Multi-node"): NCCL's, Gloo's and TensorPipe's socket interfaces, NCCL's
# InfiniBand adapters and GID index, UCX's devices, and the GPUs Ray assigns on each node.
PER_NODE_VARIABLES = frozenset(
    {
        "NCCL_SOCKET_IFNAME",
        "GLOO_SOCKET_IFNAME",
        "TP_SOCKET_IFNAME",
        "NCCL_IB_HCA",
        "NCCL_IB_GID_INDEX",
        "UCX_NET_DEVICES",
        "CUDA_VISIBLE_DEVICES",
    }
)
FILE_LOGGER_PATH_ENV = "VERL_FILE_LOGGER_PATH"

logger = logging.getLogger(__name__)


def forwarded_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables ``environ[FORWARD_ENV]`` names (comma- or space-separated) that are set in ``environ``.

    Raises ``ValueError`` naming any of :data:`PER_NODE_VARIABLES` among them."""
    names = environ.get(FORWARD_ENV, "").replace(",", " ").split()
    per_node = sorted(PER_NODE_VARIABLES.intersection(names))
    if per_node:
        raise ValueError(
            f"{FORWARD_ENV} names {', '.join(per_node)}: a per-node setting that forwarding would copy from this node "
            "to every node. Set it in each node's shell before `ray start` (docs/gpu-install.md, 'Multi-node') and "
            f"remove it from {FORWARD_ENV} (recipes: FORWARD_ENV)"
        )
    return {name: environ[name] for name in names if name in environ}


def with_env_vars(runtime_env: Mapping[str, Any] | None, variables: Mapping[str, str]) -> dict[str, Any]:
    """``runtime_env`` with ``variables`` added to its ``env_vars``; a value the job already sets wins."""
    merged = dict(runtime_env or {})
    merged["env_vars"] = {**variables, **dict(merged.get("env_vars") or {})}
    return merged


def install_forwarding(ray: ModuleType) -> None:
    """Wrap ``ray.init`` so that it forwards the named variables (only in a process where ``FORWARD_ENV`` is set)."""
    if FORWARD_ENV not in os.environ or getattr(ray.init, "_verl_tor_forwarding", False):
        return
    init: Callable[..., Any] = ray.init

    @functools.wraps(init)
    def init_with_forwarded_env(*args: Any, **kwargs: Any) -> Any:
        variables = forwarded_variables(os.environ)
        if variables:
            kwargs["runtime_env"] = with_env_vars(kwargs.get("runtime_env"), variables)
            logger.warning("forwarding %s to every Ray process of this job (runtime_env)", ", ".join(sorted(variables)))
        return init(*args, **kwargs)

    init_with_forwarded_env._verl_tor_forwarding = True  # type: ignore[attr-defined]
    ray.init = init_with_forwarded_env


def create_file_logger_folder(_module: ModuleType | None = None) -> None:
    """Create the folder of ``VERL_FILE_LOGGER_PATH`` where this process runs (veRL's FileLogger does not)."""
    path = os.environ.get(FILE_LOGGER_PATH_ENV)
    if not path:
        return
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # reported here; veRL's FileLogger then fails with its own error
        logger.warning("cannot create the metrics folder of %s=%s: %s", FILE_LOGGER_PATH_ENV, path, error)
