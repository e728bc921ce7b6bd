"""The vLLM engine arguments that veRL 0.9.1's own server code builds from a rollout config, without vLLM.

    python tests/vllm_engine_args.py MAX_POSITION_EMBEDDINGS ROLLOUT_CONFIG.yaml...  ->  JSON list, last stdout line

vLLM cannot be installed on a CPU machine, and ``verl.workers.rollout.vllm_rollout.vllm_async_server`` imports it at
module level. Here every ``vllm.*`` module is an empty stand-in (attributes are placeholder classes; the package
metadata says 0.24.0), which is enough to import veRL's module. Then veRL's real ``vLLMHttpServer`` methods run on
the config: ``_init_config``, ``_validate_configs`` (which sets ``max_model_len`` to the model's
``max_position_embeddings`` when it is unset) and ``launch_server`` up to the point where it turns its engine
argument dict into vLLM's command line (``build_cli_args_from_config``), where this probe records the dict and
stops. Run in a subprocess: the stand-ins must not leak into other tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.abc
import importlib.machinery
import importlib.metadata
import json
import sys
import types
from types import SimpleNamespace

VLLM_VERSION = "0.24.0"


class _StandIn(types.ModuleType):
    """A module whose every public attribute is a placeholder class (created on first access)."""

    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        placeholder = type(name, (), {"__init__": lambda self, *args, **kwargs: None})
        setattr(self, name, placeholder)
        return placeholder


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "vllm" or fullname.startswith("vllm."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandIn(spec.name)
        module.__path__ = []
        if spec.name == "vllm":
            module.__version__ = VLLM_VERSION
        if spec.name == "vllm.engine.arg_utils":
            # veRL reads the boolean fields of this dataclass when it writes `--no-<flag>` (none here).
            module.AsyncEngineArgs = dataclasses.make_dataclass("AsyncEngineArgs", [])
        return module

    def exec_module(self, module) -> None:
        return None


class _Recorded(Exception):
    def __init__(self, engine_args: dict):
        super().__init__("recorded")
        self.engine_args = engine_args


def engine_args(rollout_config, max_position_embeddings: int) -> dict:
    """The dict veRL's ``launch_server`` passes to vLLM for ``rollout_config`` (an OmegaConf rollout section)."""
    if not any(isinstance(finder, _StandInFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _StandInFinder())
        real_version = importlib.metadata.version
        importlib.metadata.version = lambda name: VLLM_VERSION if name == "vllm" else real_version(name)
    from verl.workers.rollout.vllm_rollout import vllm_async_server

    def record(args: dict) -> list[str]:
        raise _Recorded(dict(args))

    vllm_async_server.build_cli_args_from_config = record
    server = object.__new__(vllm_async_server.vLLMHttpServer)
    server._disaggregation_role = "null"
    server._disaggregation_kv_transfer_config = None
    server.config = server._init_config(rollout_config)
    # The model config as far as these methods read it (Qwen2.5-VL's config.json: max_position_embeddings 128000).
    server.model_config = SimpleNamespace(
        hf_config=SimpleNamespace(max_position_embeddings=max_position_embeddings),
        trust_remote_code=False,
        local_path="/models/qwen2.5-vl",
        lora={},
        lora_rank=0,
    )
    server._validate_configs()
    server.node_rank, server.replica_rank, server.nnodes, server.gpus_per_node = 0, 0, 1, 8
    server.profiler_controller = SimpleNamespace(check_enable=lambda: False)
    try:
        asyncio.run(server.launch_server())
    except _Recorded as recorded:
        return recorded.engine_args
    raise AssertionError("launch_server did not reach build_cli_args_from_config")


if __name__ == "__main__":
    from omegaconf import OmegaConf

    results = []
    for path in sys.argv[2:]:
        args = engine_args(OmegaConf.load(path), int(sys.argv[1]))
        # The same dict as vLLM's command line, through veRL's own converter.
        from verl.workers.rollout.vllm_rollout.utils import build_cli_args_from_config

        results.append({"engine_args": args, "cli": build_cli_args_from_config(args)})
    print(json.dumps(results, default=str))
