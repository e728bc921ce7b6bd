"""The CPU platform: active with VERL_PLATFORM=cpu, registered but inert otherwise (each case in a fresh process)."""

import json
import os
import subprocess
import sys

PROBE = r"""
import json, os, socket
import verl
from verl.plugin.platform import PlatformRegistry, get_platform
from verl.utils.device import get_device_name, get_nccl_backend, get_resource_name, get_torch_device
from verl.workers.engine.base import EngineRegistry
import verl.workers.engine_workers as engine_workers
from verl.single_controller.ray.base import ResourcePoolManager
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

report = {
    "registered": "cpu" in PlatformRegistry.registered_names(),
    "device": get_device_name(),
    "engine_for_cpu": EngineRegistry._engines["language_model"]["fsdp2"].get("cpu", type(None)).__name__,
    "critic_engine_for_cpu": EngineRegistry._engines["value_model"]["fsdp2"].get("cpu", type(None)).__name__,
    "poll_interval": ReplayBuffer("sync", {}, None, "drop", {}).poll_interval,
    "explicit_poll_interval": ReplayBuffer("sync", {}, None, "drop", {}, poll_interval=1.5).poll_interval,
}
if report["device"] == "cpu":
    device = get_torch_device()
    report.update(
        backend=get_nccl_backend(),
        ray_resource=get_resource_name(),
        ray_options=get_platform().ray_resource_options(0.5),
        memory=[device.memory_allocated(), device.memory_reserved(), device.max_memory_allocated()],
        current_device=str(get_platform().current_device()),
    )
    device.empty_cache()
    device.manual_seed(3)
    # veRL's worker start: one gloo process group (stock veRL asks torch for "cpu:gloo,cpu:gloo" and fails).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    engine_workers.initialize_global_process_group_ray(timeout_second=None)
    import torch.distributed as dist
    report["process_group_backend"] = dist.get_backend()
    dist.destroy_process_group()
    # Resource check of a one-worker pool on a Ray node with 8 logical CPUs and no GPU.
    import ray._private.state
    ray._private.state.available_resources_per_node = lambda: {"node": {"CPU": 8.0}}
    ResourcePoolManager({"pool": [1]}, mapping={})._check_resource_available()
    report["resource_check"] = "passed"
print(json.dumps(report))
"""


def _probe(platform: str | None) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "VERL_PLATFORM"}
    if platform is not None:
        env["VERL_PLATFORM"] = platform
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_cpu_platform_selected_by_env():
    report = _probe("cpu")
    assert report["registered"]
    assert report["device"] == "cpu"
    assert report["backend"] == "gloo"
    assert report["ray_resource"] == "CPU"
    assert report["ray_options"] == {"num_cpus": 0.5}
    assert report["memory"] == [0, 0, 0]
    assert report["current_device"] == "cpu"
    assert report["engine_for_cpu"] == "FSDPEngineWithLMHead"
    assert report["critic_engine_for_cpu"] == "FSDPEngineWithValueHead"
    assert report["process_group_backend"] == "cpu:gloo"
    assert report["resource_check"] == "passed"
    assert report["poll_interval"] == 0.2
    assert report["explicit_poll_interval"] == 1.5


def test_cpu_platform_inert_without_env():
    """Without VERL_PLATFORM=cpu nothing changes: no auto-detection, no engine, stock 2 s replay-buffer poll."""
    report = _probe(None)
    assert report["registered"]
    assert report["device"] != "cpu"
    assert report["engine_for_cpu"] == "NoneType"
    assert report["poll_interval"] == 2.0
