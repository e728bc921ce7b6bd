"""``verl_tor.launch.preflight``: each check on the outputs it parses (nvidia-smi headers as drivers print them, torch
probes, /proc/mounts), and the command on this CPU machine as SMOKE=1 runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from verl_tor.launch import preflight

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
    ("driver", "cuda", "level"),
    [
        ("580.65.06", "13.0", "ok"),
        ("590.12", "13.1", "ok"),
        ("550.54.15", "12.4", "fail"),
        ("535.104.05", "12.2", "fail"),
    ],
)
def test_driver_must_report_cuda_13(driver, cuda, level):
    assert preflight.parse_nvidia_smi(smi(driver, cuda)) == (driver, cuda)
    finding = preflight.check_driver(smi(driver, cuda))
    assert finding.level == level
    if level == "fail":
        assert f"CUDA {cuda}" in finding.message and "580.65.06" in finding.fix
        assert finding.line().startswith("preflight FAIL") and "Fix: " in finding.line()


def test_no_driver_or_no_cuda_version_fails():
    assert preflight.check_driver(None).level == "fail"
    assert (
        preflight.check_driver("NVIDIA-SMI has failed because it couldn't communicate with the driver").level == "fail"
    )


def test_torch_must_be_a_cuda_13_build_that_sees_the_gpus():
    good = {"version": "2.11.0+cu130", "cuda": "13.0", "devices": 8}
    assert [f.level for f in preflight.check_torch(good, gpus=8)] == ["ok"]
    cpu_build = {"version": "2.11.0+cpu", "cuda": None, "devices": 0}
    assert [f.level for f in preflight.check_torch(cpu_build, gpus=8)] == ["fail", "fail"]
    cuda12 = preflight.check_torch({"version": "2.11.0+cu128", "cuda": "12.8", "devices": 8}, gpus=8)
    assert [f.level for f in cuda12] == ["fail"] and "CUDA 12.8" in cuda12[0].message
    fewer = preflight.check_torch({"version": "2.11.0", "cuda": "13.0", "devices": 4}, gpus=8)
    assert [f.level for f in fewer] == ["fail"] and "4 GPU(s)" in fewer[0].message
    broken = preflight.check_torch({"error": "OSError: libcudart.so.13: cannot open shared object file"}, gpus=8)
    assert broken[0].level == "fail" and "libcudart.so.13" in broken[0].message


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


def test_multi_node_outputs_on_a_local_filesystem_warn():
    assert preflight.filesystem_type(Path("/home/me/verl_tor_runs"), MOUNTS) == "ext4"
    assert preflight.filesystem_type(Path("/mnt/shared/runs"), MOUNTS) == "nfs4"
    assert preflight.filesystem_type(Path("/mnt/shared/scratch/runs"), MOUNTS) == "xfs"
    assert preflight.filesystem_type(Path("/mnt/sharedx"), MOUNTS) == "overlay"
    assert preflight.check_shared_outputs(Path("/home/me/r"), nnodes=2, fs_type="ext4").level == "warn"
    assert preflight.check_shared_outputs(Path("/mnt/shared/r"), nnodes=2, fs_type="nfs4").level == "ok"
    assert preflight.check_shared_outputs(Path("/home/me/r"), nnodes=1, fs_type="ext4") is None


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
