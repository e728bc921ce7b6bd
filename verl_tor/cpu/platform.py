"""A CPU execution backend for veRL 0.9.1, opt-in with ``VERL_PLATFORM=cpu``.

veRL resolves its accelerator through ``verl.plugin.platform`` (``VERL_PLATFORM`` overrides auto-detection). We
register a platform named ``cpu`` (device ``cpu``, collective backend gloo, Ray resource ``CPU``) and, only when it
is selected, the few work-arounds that veRL's trainer needs to run on it:

- the FSDP engine registered for device ``cpu`` in ``EngineRegistry`` (veRL registers it for cuda/npu only);
- ``initialize_global_process_group_ray`` defaults to ``cpu:gloo`` (veRL builds ``cpu:gloo,cpu:gloo``, which
  torch rejects);
- ``ResourcePoolManager._check_resource_available`` counts logical CPUs (veRL counts only GPUs/NPUs);
- the FSDP2 reference model (veRL always offloads it with ``CPUOffloadPolicy(pin_memory=True)``) is not pinned:
  pinning host memory needs CUDA, and on the CPU the parameters are host memory anyway;
- the V1 replay buffer polls TransferQueue every 0.2 s instead of 2 s (its constructor default, which the trainer
  config cannot set; on a tiny model it rounds every generation phase up to 2 s).

The platform class is always registered (harmless: it never wins auto-detection), everything else only when
``VERL_PLATFORM=cpu``, so GPU runs are untouched. Use it with ``strategy=fsdp2``, ``attn_implementation=sdpa`` and
``use_remove_padding=False``; :mod:`verl_tor.testing.cpu_overrides` lists the full set of overrides.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import torch
from verl.plugin.platform import PlatformBase, PlatformRegistry

from verl_tor.import_hooks import call_after_import

logger = logging.getLogger(__name__)

PLATFORM_NAME = "cpu"
ENGINE_MODULE = "verl.workers.engine.fsdp.transformer_impl"
DISTRIBUTED_MODULE = "verl.utils.distributed"
RAY_BASE_MODULE = "verl.single_controller.ray.base"
REPLAY_BUFFER_MODULE = "verl.trainer.ppo.v1.replay_buffer"
REPLAY_POLL_INTERVAL_S = 0.2


def cpu_platform_selected() -> bool:
    """Whether this process runs veRL on the CPU platform (``VERL_PLATFORM=cpu``)."""
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM_NAME


class CPUDeviceModule:
    """``torch.cpu`` plus the ``torch.cuda``-style helpers veRL calls on its device module.

    veRL calls memory statistics, cache and RNG functions on ``get_torch_device()`` (e.g. ``aggressive_empty_cache``
    at the end of ``init_model``); ``torch.cpu`` has none of them. Memory calls are no-ops reporting zero, the RNG
    calls use torch's (CPU) default generator.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(torch.cpu, name)

    @staticmethod
    def is_available() -> bool:
        return True

    @staticmethod
    def get_device_name(device: Any = None) -> str:
        return PLATFORM_NAME

    @staticmethod
    def empty_cache() -> None:
        return None

    @staticmethod
    def ipc_collect() -> None:
        return None

    @staticmethod
    def memory_allocated(device: Any = None) -> int:
        return 0

    memory_reserved = max_memory_allocated = max_memory_reserved = memory_allocated

    @staticmethod
    def reset_peak_memory_stats(device: Any = None) -> None:
        return None

    @staticmethod
    def set_per_process_memory_fraction(fraction: float, device: Any = None) -> None:
        return None

    @staticmethod
    def mem_get_info(device: Any = None) -> tuple[int, int]:
        import psutil

        memory = psutil.virtual_memory()
        return memory.available, memory.total

    @staticmethod
    def manual_seed(seed: int) -> None:
        torch.manual_seed(seed)

    manual_seed_all = manual_seed

    @staticmethod
    def get_rng_state(device: Any = None) -> torch.Tensor:
        return torch.get_rng_state()

    @staticmethod
    def set_rng_state(state: torch.Tensor, device: Any = None) -> None:
        torch.set_rng_state(state)


_DEVICE_MODULE = CPUDeviceModule()


class PlatformCPU(PlatformBase):
    """veRL platform that runs every worker on the host CPU (gloo collectives, logical Ray ``CPU`` resources)."""

    @property
    def device_name(self) -> str:
        return PLATFORM_NAME

    @property
    def vendor_name(self) -> str:
        return PLATFORM_NAME

    @property
    def device_module(self) -> ModuleType:
        return _DEVICE_MODULE  # duck-typed like torch.cuda

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # Never auto-detected: a machine without an accelerator must opt in with VERL_PLATFORM=cpu.
        return False

    def current_device(self) -> str:
        # veRL passes this to .to(...) and torch.device(...): "cpu" is valid there, an index would mean cuda.
        return torch.cpu.current_device()

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: int | None = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # Nothing to hide on a CPU; a name of our own keeps Ray's and CUDA's variables untouched.
        return "VERL_CPU_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "CPU"

    def ray_resource_options(self, num_gpus: float) -> dict[str, Any]:
        # Ray refuses "CPU" as a custom resource; one "device" of a worker is num_gpus logical CPUs.
        return {"num_cpus": num_gpus}

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None


def _register_fsdp_engine(transformer_impl: ModuleType) -> None:
    """veRL registers its FSDP engines for devices cuda and npu only; register the same classes for cpu."""
    # The engine package is still initialising here; its registry lives in the base module.
    from verl.workers.engine.base import EngineRegistry

    for model_type, engine_cls in (
        ("language_model", transformer_impl.FSDPEngineWithLMHead),
        ("value_model", transformer_impl.FSDPEngineWithValueHead),
    ):
        registered = EngineRegistry._engines.get(model_type, {})
        if PLATFORM_NAME not in registered.get("fsdp2", {}):
            EngineRegistry.register(model_type=model_type, backend=["fsdp", "fsdp2"], device=PLATFORM_NAME)(engine_cls)


def _default_gloo_process_group(distributed: ModuleType) -> None:
    """``initialize_global_process_group_ray`` builds ``f"cpu:gloo,{device}:{backend}"`` = ``cpu:gloo,cpu:gloo``,
    which torch rejects (one backend per device type); on the CPU platform the default becomes ``cpu:gloo``."""
    original = distributed.initialize_global_process_group_ray
    if getattr(original, "_verl_tor_patched", False):
        return

    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        return original(timeout_second=timeout_second, backend=backend or "cpu:gloo")

    initialize_global_process_group_ray._verl_tor_patched = True
    initialize_global_process_group_ray.__wrapped__ = original
    distributed.initialize_global_process_group_ray = initialize_global_process_group_ray


def _count_cpus_in_resource_check(ray_base: ModuleType) -> None:
    """``ResourcePoolManager._check_resource_available`` sums only "GPU"/"NPU" per node, so a CPU cluster always
    "lacks" devices; on the CPU platform a worker's device is a logical CPU, so count those instead."""
    manager_cls = ray_base.ResourcePoolManager
    if getattr(manager_cls._check_resource_available, "_verl_tor_patched", False):
        return

    def _check_resource_available(self) -> None:
        import ray

        available = sum(node.get("CPU", 0) for node in ray._private.state.available_resources_per_node().values())
        required = self.get_n_gpus()
        if available < required:
            raise ValueError(f"Total available logical CPUs {available} is less than total desired {required}")

    _check_resource_available._verl_tor_patched = True
    manager_cls._check_resource_available = _check_resource_available


def _shorten_replay_buffer_poll(replay_buffer: ModuleType) -> None:
    """``ReplayBuffer`` sleeps ``poll_interval`` (2 s by default) between looks at TransferQueue while it waits for
    a batch; the trainer never passes the argument. A poll that an explicit argument sets is left alone."""
    buffer_cls = replay_buffer.ReplayBuffer
    original = buffer_cls.__init__
    if getattr(original, "_verl_tor_patched", False):
        return

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        if "poll_interval" not in inspect.signature(original).bind(self, *args, **kwargs).arguments:
            kwargs["poll_interval"] = REPLAY_POLL_INTERVAL_S
        original(self, *args, **kwargs)

    __init__._verl_tor_patched = True
    buffer_cls.__init__ = __init__


def _unpinned_cpu_offload(transformer_impl: ModuleType) -> None:
    """veRL builds every forward-only FSDP2 engine (the reference model of a KL loss) with
    ``CPUOffloadPolicy(pin_memory=True)``, and pinning raises without a CUDA driver: keep the policy, unpinned."""
    policy_cls = transformer_impl.CPUOffloadPolicy
    if getattr(policy_cls, "_verl_tor_patched", False):
        return

    def unpinned_cpu_offload_policy(pin_memory: bool = True):
        return policy_cls(pin_memory=False)

    unpinned_cpu_offload_policy._verl_tor_patched = True
    unpinned_cpu_offload_policy.__wrapped__ = policy_cls
    transformer_impl.CPUOffloadPolicy = unpinned_cpu_offload_policy


def register() -> None:
    """Register the ``cpu`` platform; with ``VERL_PLATFORM=cpu`` also attach the CPU work-arounds (idempotent)."""
    if PlatformRegistry.get(PLATFORM_NAME) is not PlatformCPU:
        PlatformRegistry.register(platform=PLATFORM_NAME)(PlatformCPU)
    if not cpu_platform_selected():
        return
    from verl_tor.patches import verl_version_matches

    if not verl_version_matches():
        logger.warning("verl-tor's CPU platform work-arounds target veRL 0.9.1; they stay off on this version")
        return
    call_after_import(ENGINE_MODULE, _register_fsdp_engine)
    call_after_import(ENGINE_MODULE, _unpinned_cpu_offload)
    call_after_import(DISTRIBUTED_MODULE, _default_gloo_process_group)
    call_after_import(RAY_BASE_MODULE, _count_cpus_in_resource_check)
    call_after_import(REPLAY_BUFFER_MODULE, _shorten_replay_buffer_poll)
