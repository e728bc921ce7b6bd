"""``verl_tor.launch.ray_env``: variables named in VERL_TOR_FORWARD_ENV reach ``ray.init``'s runtime_env (values from the
process, never from the command line), and the metrics folder is created where veRL's file logger runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from verl_tor.launch import ray_env


def test_named_variables_that_are_set_are_forwarded():
    environ = {"VERL_TOR_FORWARD_ENV": "WANDB_API_KEY, HF_TOKEN HF_HOME", "WANDB_API_KEY": "k", "HF_HOME": "/h"}
    assert ray_env.forwarded_variables(environ) == {"WANDB_API_KEY": "k", "HF_HOME": "/h"}
    assert ray_env.forwarded_variables({"WANDB_API_KEY": "k"}) == {}


def test_runtime_env_keeps_what_the_job_sets():
    runtime_env = {"env_vars": {"TOKENIZERS_PARALLELISM": "true", "HF_HOME": "/job"}, "working_dir": None}
    merged = ray_env.with_env_vars(runtime_env, {"HF_HOME": "/shell", "WANDB_API_KEY": "k"})
    assert merged == {
        "env_vars": {"TOKENIZERS_PARALLELISM": "true", "HF_HOME": "/job", "WANDB_API_KEY": "k"},
        "working_dir": None,
    }
    assert runtime_env["env_vars"] == {"TOKENIZERS_PARALLELISM": "true", "HF_HOME": "/job"}, "input untouched"
    assert ray_env.with_env_vars(None, {"A": "1"}) == {"env_vars": {"A": "1"}}


def test_wrapped_init_passes_the_values_read_at_call_time(monkeypatch):
    calls = []
    fake_ray = SimpleNamespace(init=lambda *args, **kwargs: calls.append((args, kwargs)) or "context")
    monkeypatch.delenv(ray_env.FORWARD_ENV, raising=False)
    ray_env.install_forwarding(fake_ray)
    assert not hasattr(fake_ray.init, "__wrapped__"), "no forwarding asked for: ray.init stays as it is"

    monkeypatch.setenv(ray_env.FORWARD_ENV, "MY_SECRET")
    ray_env.install_forwarding(fake_ray)
    ray_env.install_forwarding(fake_ray)  # idempotent
    monkeypatch.setenv("MY_SECRET", "s3cr3t")
    # The way veRL's run_ppo calls it: keyword arguments from its config, runtime_env with veRL's own env_vars.
    assert fake_ray.init(num_cpus=4, runtime_env={"env_vars": {"NCCL_DEBUG": "WARN"}}) == "context"
    assert calls == [((), {"num_cpus": 4, "runtime_env": {"env_vars": {"MY_SECRET": "s3cr3t", "NCCL_DEBUG": "WARN"}}})]


def test_plugin_wires_both_in_a_fresh_process(tmp_path):
    metrics = tmp_path / "not" / "yet" / "there" / "metrics.jsonl"
    probe = (
        "import json, ray, verl\n"
        "import verl.utils.tracking as tracking\n"
        "tracking.FileLogger('p', 'e').finish()\n"
        "print(json.dumps({'wrapped': getattr(ray.init, '_verl_tor_forwarding', False)}))\n"
    )
    env = {**os.environ, "VERL_TOR_FORWARD_ENV": "WANDB_API_KEY", "VERL_FILE_LOGGER_PATH": str(metrics)}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"wrapped": True}
    assert metrics.is_file(), "veRL's FileLogger opened its file in a folder the plugin created"


@pytest.mark.parametrize("name", sorted(ray_env.PER_NODE_VARIABLES))
def test_per_node_network_variables_are_refused_by_name(name):
    environ = {"VERL_TOR_FORWARD_ENV": f"WANDB_API_KEY,{name}", "WANDB_API_KEY": "k", name: "eth0"}
    with pytest.raises(ValueError, match=rf"names {name}: a per-node setting"):
        ray_env.forwarded_variables(environ)


def test_a_refused_variable_stops_ray_init_before_it_runs(monkeypatch):
    calls = []
    fake_ray = SimpleNamespace(init=lambda *args, **kwargs: calls.append(kwargs))
    monkeypatch.setenv(ray_env.FORWARD_ENV, "HF_TOKEN NCCL_SOCKET_IFNAME")
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "ens1f0")
    ray_env.install_forwarding(fake_ray)
    with pytest.raises(ValueError, match="NCCL_SOCKET_IFNAME"):
        fake_ray.init(num_cpus=1)
    assert calls == [], "ray.init never ran"
