"""``verl_tor.launch.preflight``: each check on the outputs it parses (nvidia-smi headers as drivers print them, torch
probes, /proc/mounts), and the command on this CPU machine as SMOKE=1 runs it."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from verl_tor.launch import preflight

GIB = 1024**3
ROOT = Path(__file__).resolve().parents[1]

NVIDIA_SMI_HEADER = """\
Mon Dec  1 10:00:00 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI {driver}              Driver Version: {driver}      CUDA Version: {cuda}     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
|   0  NVIDIA H100 80GB HBM3          On  |   00000000:18:00.0 Off |                    0 |
+-----------------------------------------+------------------------+----------------------+
"""


def smi(driver: str, cuda: str) -> str:
    return NVIDIA_SMI_HEADER.format(driver=driver, cuda=cuda)


@pytest.mark.parametrize(
    ("driver", "cuda", "works", "level"),
    [
        ("580.65.06", "13.0", True, "ok"),
        ("590.12", "13.1", True, "ok"),
        ("550.54.15", "12.4", False, "fail"),
        ("535.104.05", "12.2", False, "fail"),
        # CUDA's forward-compatibility package: the header keeps the old driver's CUDA, torch's kernels run.
        ("535.104.05", "12.2", True, "warn"),
    ],
)
def test_torch_decides_and_the_nvidia_smi_header_only_warns(driver, cuda, works, level):
    assert preflight.parse_nvidia_smi(smi(driver, cuda)) == (driver, cuda)
    finding = preflight.check_driver(smi(driver, cuda), cuda_works=works)
    assert finding.level == level
    if level == "fail":
        assert f"CUDA {cuda}" in finding.message and "580.65.06" in finding.fix
        assert finding.line().startswith("preflight FAIL") and "Fix: " in finding.line()
    if level == "warn":
        assert "forward-compatibility" in finding.message


def test_no_driver_or_no_cuda_version_fails_unless_torch_runs_kernels():
    assert preflight.check_driver(None, cuda_works=False).level == "fail"
    assert preflight.check_driver(None, cuda_works=True).level == "warn"
    no_driver = "NVIDIA-SMI has failed because it couldn't communicate with the driver"
    assert preflight.check_driver(no_driver, cuda_works=False).level == "fail"


GOOD_PROBE = {"version": "2.11.0+cu130", "cuda": "13.0", "available": True, "devices": 8}


def test_torch_must_be_a_cuda_13_build_that_runs_a_kernel_on_the_gpus():
    assert [f.level for f in preflight.check_torch(GOOD_PROBE, gpus=8)] == ["ok"]
    assert preflight.cuda_works(GOOD_PROBE, gpus=8) and not preflight.cuda_works(GOOD_PROBE, gpus=9)
    cpu_build = {"version": "2.11.0+cpu", "cuda": None, "available": False, "devices": 0}
    assert [f.level for f in preflight.check_torch(cpu_build, gpus=8)] == ["fail"]
    cuda12 = preflight.check_torch({**GOOD_PROBE, "version": "2.11.0+cu128", "cuda": "12.8"}, gpus=8)
    assert [f.level for f in cuda12] == ["fail"] and "CUDA 12.8" in cuda12[0].message
    unavailable = preflight.check_torch({**GOOD_PROBE, "available": False, "devices": 0}, gpus=8)
    assert "is_available() is False" in unavailable[0].message
    fewer = preflight.check_torch({**GOOD_PROBE, "devices": 4}, gpus=8)
    assert [f.level for f in fewer] == ["fail"] and "4 GPU(s)" in fewer[0].message
    kernel = {**GOOD_PROBE, "kernel_error": "GPU 3: RuntimeError: CUDA error: no kernel image is available"}
    assert preflight.check_torch(kernel, gpus=8)[0].level == "fail" and not preflight.cuda_works(kernel, gpus=8)
    broken = preflight.check_torch({"error": "OSError: libcudart.so.13: cannot open shared object file"}, gpus=8)
    assert broken[0].level == "fail" and "libcudart.so.13" in broken[0].message


def test_torch_probe_on_this_cpu_machine_reports_no_cuda():
    probe = preflight.probe_torch(gpus=8)
    assert probe["available"] is False and probe["devices"] == 0 and "kernel_error" not in probe
    assert not preflight.cuda_works(probe, gpus=1) and preflight.check_torch(probe, gpus=1)[0].level == "fail"


GPU_CSV = """\
0, GPU-aaaa1111, 0, 81559
1, GPU-bbbb2222, 72011, 81559
2, GPU-cccc3333, 350, 81559
"""


def test_memory_held_on_a_gpu_the_run_uses_fails_with_the_processes():
    rows = preflight.parse_gpu_memory(GPU_CSV)
    assert [row["used_mib"] for row in rows] == [0, 72011, 350]
    processes = "48213, ray::WorkerDict.actor_rollout_generate, 72000\n"
    held = preflight.check_gpu_memory(preflight.visible_gpus(rows, None), processes)
    assert held.level == "fail" and "GPU 1: 72011 of 81559 MiB" in held.message and "48213" in held.message
    # CUDA_VISIBLE_DEVICES by index or (prefix of a) UUID leaves GPU 1 out.
    for visible in ("0,2", "GPU-cccc3333,GPU-aaaa", "2"):
        chosen = preflight.visible_gpus(rows, visible)
        assert preflight.check_gpu_memory(chosen, processes).level == "ok"
    assert [row["index"] for row in preflight.visible_gpus(rows, "2,0")] == ["2", "0"]
    assert preflight.check_gpu_memory([], "") is None


def test_imports_report_the_error_and_flash_attn_loads_its_kernels():
    imported = []

    def importer(name):
        imported.append(name)
        if name == "flash_attn.flash_attn_interface":
            raise ImportError("libc10_cuda.so: undefined symbol")

    errors = preflight.probe_imports(["vllm", "flash_attn"], importer)
    assert imported == ["vllm", "flash_attn", "flash_attn.flash_attn_interface"]
    assert errors == {"vllm": None, "flash_attn": "ImportError: libc10_cuda.so: undefined symbol"}
    assert [f.level for f in preflight.check_imports(errors)] == ["ok", "fail"]


def test_disk_need_is_two_checkpoints_with_optimizer_state_and_a_merged_copy():
    # Qwen2.5-VL-7B: 8.29 B parameters; fp32 weights + AdamW moments = 12 bytes each (≈ 99.5 GB per checkpoint).
    assert preflight.required_disk_gb(8.29, checkpoints=2, merged=1) == pytest.approx(2 * 99.48 + 16.58 + 10)
    short = preflight.check_disk(Path("/runs"), free_bytes=int(150e9), need_gb=225.5)
    assert short.level == "warn" and "150 GB free" in short.message and "226 GB" in short.message
    assert preflight.check_disk(Path("/runs"), free_bytes=int(300e9), need_gb=225.5).level == "ok"


MOUNTS = """\
overlay / overlay rw,relatime 0 0
/dev/nvme0n1p1 /home ext4 rw,relatime 0 0
fs01:/export/shared /mnt/shared nfs4 rw,relatime 0 0
/dev/nvme1n1 /mnt/shared/scratch xfs rw 0 0
"""


def test_multi_node_folders_on_a_local_filesystem_warn():
    assert preflight.filesystem_type(Path("/home/me/verl_tor_runs"), MOUNTS) == "ext4"
    assert preflight.filesystem_type(Path("/mnt/shared/runs"), MOUNTS) == "nfs4"
    assert preflight.filesystem_type(Path("/mnt/shared/scratch/runs"), MOUNTS) == "xfs"
    assert preflight.filesystem_type(Path("/mnt/sharedx"), MOUNTS) == "overlay"
    local = preflight.check_shared("HF_HOME", Path("/home/me/.cache/huggingface"), nnodes=2, fs_type="ext4")
    assert local.level == "warn" and "HF_HOME /home/me/.cache/huggingface" in local.message
    assert preflight.check_shared("data", Path("/mnt/shared/d"), nnodes=2, fs_type="nfs4").level == "ok"
    assert preflight.check_shared("OUTPUT_DIR", Path("/home/me/r"), nnodes=1, fs_type="ext4") is None


def test_hf_home_follows_huggingface_hubs_rule(tmp_path):
    assert preflight.hf_home({"HF_HOME": str(tmp_path)}) == tmp_path
    assert preflight.hf_home({"XDG_CACHE_HOME": "/x"}) == Path("/x/huggingface")


def test_wandb_needs_a_key_that_can_be_forwarded(tmp_path):
    netrc = tmp_path / ".netrc"
    assert preflight.check_logger_credentials("console", {}, netrc) is None
    assert preflight.check_logger_credentials("console,wandb", {"WANDB_API_KEY": "k"}, netrc).level == "ok"
    assert preflight.check_logger_credentials("console,wandb", {}, netrc).level == "warn"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password k\n")
    assert "~/.netrc" in preflight.check_logger_credentials("console,wandb", {}, netrc).message


def test_images_per_row_are_read_from_the_parquet_without_the_bytes(tmp_path):
    rows = [{"images": [{"bytes": b"x" * 10, "path": None}] * count, "prompt": "p"} for count in (1, 3, 0, 2)]
    pd.DataFrame(rows).to_parquet(tmp_path / "train.parquet")
    assert preflight.images_per_row(tmp_path / "train.parquet") == 3
    findings = preflight.check_data([tmp_path / "train.parquet", tmp_path / "missing.parquet"], max_images=1)
    assert [f.level for f in findings] == ["fail", "fail"]
    assert "3 images" in findings[0].message and "limit_mm_per_prompt.image=3" in findings[0].fix
    assert "does not exist" in findings[1].message
    assert preflight.check_data([tmp_path / "train.parquet"], max_images=3)[0].level == "ok"


def test_command_under_smoke_passes_on_a_cpu_machine_and_fails_on_missing_data(tmp_path):
    command = [
        sys.executable,
        "-m",
        "verl_tor.launch.preflight",
        "--smoke",
        "--output-dir",
        str(tmp_path / "runs" / "x"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "GB free under" in done.stderr and "nvidia" not in done.stderr.lower()
    missing = subprocess.run([*command, "--data", str(tmp_path / "no.parquet")], capture_output=True, text=True)
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "PREFLIGHT=0" in missing.stderr


# ---------------------------------------------------------------------------------------- vLLM, fla, the model


def test_vllm_is_checked_through_its_compiled_extension_and_registry():
    assert preflight.GPU_MODULES == ("vllm", "vllm._C", "flash_attn")

    def importer(name):
        if name == "vllm._C":
            raise ImportError("libcudart.so.13: cannot open shared object file")
        return SimpleNamespace(
            ModelRegistry=SimpleNamespace(get_supported_archs=lambda: ["Qwen3VLForConditionalGeneration"])
        )

    errors = preflight.probe_imports(["vllm", "vllm._C"], importer)
    assert errors == {"vllm": None, "vllm._C": "ImportError: libcudart.so.13: cannot open shared object file"}
    supported = preflight.probe_vllm_architectures(importer)
    assert supported == {"Qwen3VLForConditionalGeneration"}
    assert preflight.check_vllm_architecture("Qwen3VLForConditionalGeneration", supported).level == "ok"
    missing = preflight.check_vllm_architecture("Qwen3_5ForConditionalGeneration", supported)
    assert missing.level == "fail" and "no Qwen3_5ForConditionalGeneration" in missing.message
    # On this machine vLLM is not installed: the registry cannot be read, which fails.
    unreadable = preflight.check_vllm_architecture("X", preflight.probe_vllm_architectures())
    assert unreadable.level == "fail" and "vllm" in unreadable.message


def test_qwen3_5_needs_flash_linear_attention():
    error = preflight.probe_imports([preflight.FLA_MODULE])[preflight.FLA_MODULE]  # not installed here
    assert error == "ModuleNotFoundError: No module named 'fla'"
    missing = preflight.check_fla(error, preflight.installed_version("flash-linear-attention"))
    assert missing.level == "fail" and "slow torch path" in missing.message and "0.5.2" in missing.fix
    assert preflight.check_fla(None, "0.2.1").level == "fail"
    assert preflight.check_fla(None, "0.5.2").level == "ok"


def test_the_model_config_comes_from_a_local_folder_or_the_hub_cache(tmp_path):
    folder = tmp_path / "merged"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"architectures": ["Qwen2_5_VLForConditionalGeneration"], "tie_word_embeddings": True})
    )
    config = preflight.model_config(str(folder), lambda model: None)
    assert preflight.model_architecture(config, "qwen3_vl") == "Qwen2_5_VLForConditionalGeneration"
    assert preflight.tied_embeddings(config) is True
    cached = tmp_path / "cached.json"
    cached.write_text(
        json.dumps(
            {"architectures": ["Qwen3VLForConditionalGeneration"], "text_config": {"tie_word_embeddings": False}}
        )
    )
    config = preflight.model_config("Qwen/Qwen3-VL-8B-Instruct", lambda model: str(cached))
    assert preflight.model_architecture(config, None) == "Qwen3VLForConditionalGeneration"
    assert preflight.tied_embeddings(config) is False
    # A Hub id not downloaded yet: the family's architecture, tying unknown.
    assert preflight.model_config("Qwen/Qwen3.5-9B", lambda model: None) is None
    assert preflight.model_architecture(None, "qwen3_5") == "Qwen3_5ForConditionalGeneration"
    assert preflight.tied_embeddings(None) is None
    assert preflight.hub_cached_config("Qwen/not-downloaded-here") is None


# ---------------------------------------------------------------------------------------- host


def test_shm_below_a_gib_fails_and_below_rays_object_store_warns():
    docker_default = preflight.check_shm(64 * 1024**2, 512 * GIB)
    assert (
        docker_default.level == "fail" and "0.06 GiB" in docker_default.message and "--shm-size" in docker_default.fix
    )
    assert preflight.check_shm(8 * GIB, 512 * GIB).level == "warn"  # Ray wants 30 %: 154 GiB
    assert preflight.check_shm(256 * GIB, 512 * GIB).level == "ok"
    assert preflight.check_shm(None, None).level == "fail"
    assert preflight.shm_size(Path("/dev/shm")) == os.statvfs("/dev/shm").f_blocks * os.statvfs("/dev/shm").f_frsize


def test_limits_open_files_warn_and_locked_memory_fails_multi_node_over_infiniband(tmp_path):
    infinity = resource.RLIM_INFINITY
    low = preflight.check_limits((1024, 4096), (65536, 65536), nnodes=1, infiniband=False, unlimited=infinity)
    assert [f.level for f in low] == ["warn"] and "4096" in low[0].message
    ok = preflight.check_limits((1024, 1048576), (65536, 65536), nnodes=1, infiniband=True, unlimited=infinity)
    assert [f.level for f in ok] == ["ok"], "one node: NCCL does not use the adapters"
    multi = preflight.check_limits((1024, 1048576), (65536, 65536), nnodes=2, infiniband=True, unlimited=infinity)
    assert [f.level for f in multi] == ["ok", "fail"] and "64 KiB" in multi[1].message
    sockets = preflight.check_limits((1024, 1048576), (65536, 65536), nnodes=2, infiniband=False, unlimited=infinity)
    assert [f.level for f in sockets] == ["ok"]
    unlimited = preflight.check_limits(
        (1024, infinity), (infinity, infinity), nnodes=2, infiniband=True, unlimited=infinity
    )
    assert [f.level for f in unlimited] == ["ok"]
    assert not preflight.has_infiniband(tmp_path / "none")
    (tmp_path / "ib" / "mlx5_0").mkdir(parents=True)
    assert preflight.has_infiniband(tmp_path / "ib")


def test_host_memory_counts_a_load_per_rank_when_embeddings_are_tied():
    # Qwen2.5-VL-3B ties its embeddings: each of 8 ranks loads 3.75 B parameters in fp32.
    tied = preflight.required_host_memory_gb(3.75, gpus=8, nnodes=1, tied=True)
    assert tied == pytest.approx(8 * 4 * 3.75 + 2 * 3.75 + 8 * 8)
    untied = preflight.required_host_memory_gb(8.29, gpus=8, nnodes=2, tied=False)
    assert untied == pytest.approx(4 * 8.29 + 2 * 8.29 / 2 + 8 * 8)
    short = preflight.check_host_memory(int(150e9), tied, True)
    assert short.level == "warn" and "150 GB" in short.message and "tied embeddings" in short.message
    assert preflight.check_host_memory(int(2000e9), tied, True).level == "ok"
    assert preflight.meminfo_bytes("MemTotal: 2048 kB\nMemAvailable: 1024 kB\n", "MemAvailable") == 1024 * 1024


def test_allreduce_runs_for_real_with_gloo_and_reports_failures_and_hangs():
    ok = preflight.run_allreduce("gloo", 2)
    assert ok["returncode"] == 0 and "all-reduce ok" in ok["output"], ok
    assert preflight.check_allreduce(ok, "gloo", 2).level == "ok"
    # NCCL on a machine without GPUs: the failure comes back with the error.
    failed = preflight.run_allreduce("nccl", 1)
    finding = preflight.check_allreduce(failed, "nccl", 1)
    assert finding.level == "fail" and "Error" in finding.message
    hung = preflight.run_allreduce("gloo", 2, timeout_s=0.2)  # python + torch start alone take longer
    assert hung == {"timed_out": True}
    assert "hung" in preflight.check_allreduce(hung, "nccl", 8).message


def test_per_node_forwarding_fails_before_anything_starts():
    assert preflight.check_forwarding("WANDB_API_KEY HF_TOKEN HF_HOME") is None
    refused = preflight.check_forwarding("WANDB_API_KEY NCCL_SOCKET_IFNAME")
    assert refused.level == "fail" and "FORWARD_ENV names NCCL_SOCKET_IFNAME" in refused.message


FAKE_NVIDIA_SMI = """#!/bin/sh
case "$1" in
  --query-gpu=*) printf '%s\\n' '0, GPU-aaaa1111, 0, 81559' '1, GPU-bbbb2222, 72011, 81559' ;;
  --query-compute-apps=*) printf '%s\\n' '48213, ray::WorkerDict, 72000' ;;
  *) printf '%s\\n' '| NVIDIA-SMI 535.104.05   Driver Version: 535.104.05   CUDA Version: 12.2 |' ;;
esac
"""


def test_command_on_a_node_wires_every_check(tmp_path):
    """The full (non-smoke) preflight on this CPU machine with a fake nvidia-smi: torch finds no CUDA (so the old
    header fails), the fake GPU 1 holds memory, vLLM and flash-attn are absent; the host checks and a Gloo
    all-reduce run for real."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HF_HOME": str(tmp_path / "hf")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    command = [sys.executable, "-m", "verl_tor.launch.preflight", "--gpus", "2", "--nnodes", "2", "--family", "qwen3_5"]
    command += ["--output-dir", str(tmp_path / "runs"), "--params-b", "0.001", "--allreduce-backend", "gloo"]
    command += ["--shared", str(tmp_path), "--forward-env", "WANDB_API_KEY GLOO_SOCKET_IFNAME"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 1
    lines = done.stderr
    assert "FAIL  NVIDIA driver 535.104.05 supports CUDA 12.2" in lines
    assert "torch.cuda.is_available() is False" in lines
    assert "GPU 1: 72011 of 81559 MiB" in lines and "48213" in lines
    assert "FAIL  vllm does not import" in lines and "FAIL  vllm._C does not import" in lines
    assert "FAIL  flash-linear-attention (fla.ops.gated_delta_rule) does not import" in lines
    assert "vLLM's model registry cannot be read" in lines, "the architecture check ran (Qwen3.5's by family)"
    assert "/dev/shm is" in lines and "open files:" in lines and "of host memory available" in lines
    assert "OK    gloo all-reduce across 2 GPU(s)" in lines
    assert f"folder {tmp_path} is on" in lines and f"HF_HOME {tmp_path / 'hf'} is on" in lines
    assert "FAIL  FORWARD_ENV names GLOO_SOCKET_IFNAME" in lines


def make_dry_run(*arguments: str, **environ: str) -> str:
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "CONDA_PREFIX", "MAKEFLAGS")}
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**env, **environ},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_preflight_passes_the_node_count_and_uses_the_active_interpreter():
    out = make_dry_run("preflight", "NNODES=2", "DATA_ROOT=/shared/data", VIRTUAL_ENV="/opt/env-a")
    assert out.startswith("/opt/env-a/bin/python -m verl_tor.launch.preflight --gpus 8 --nnodes 2")
    assert "--shared /shared/data" in out
    out = make_dry_run("preflight", "MODEL=/m", "FAMILY=qwen3_5", "PARAMS_B=9.65", CONDA_PREFIX="/opt/conda")
    assert (
        out.startswith("/opt/conda/bin/python -m") and "--model /m --family qwen3_5" in out and "--params-b 9.65" in out
    )


def test_data_prep_runs_with_the_active_interpreter_and_installs_nothing():
    out = make_dry_run("data-geo3k", "DATA_ROOT=/d", VIRTUAL_ENV="/opt/env-gpu")
    assert out.strip() == "/opt/env-gpu/bin/python -m verl_tor.data_prep.geo3k --local_save_dir /d/geo3k"
    assert make_dry_run("data-mmk12", "DATA_PYTHON=/x/python").startswith("/x/python -m verl_tor.data_prep.mmk12")
    # No active environment and no GPU venv (a fresh clone): .venv, which `make install` builds first.
    fresh = make_dry_run("data-geo3k", "GPU_VENV=/nonexistent", "DATA_ROOT=/d").strip().splitlines()
    assert fresh[-1] == ".venv/bin/python -m verl_tor.data_prep.geo3k --local_save_dir /d/geo3k"
    assert make_dry_run("preflight", "GPU_VENV=/nonexistent").startswith("python3 -m verl_tor.launch.preflight")
