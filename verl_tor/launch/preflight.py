"""Checks a GPU node before a recipe starts Ray: one line per problem, with the fix.

    python -m verl_tor.launch.preflight [--gpus 8] [--nnodes 1] [--output-dir DIR] [--params-b 8.29] [--checkpoints 2]
                                 [--merged 1] [--logger console,wandb] [--data FILE ...] [--max-images 1] [--smoke]

Every recipe runs it first through ``recipes/common.sh`` (``PREFLIGHT=0`` skips it; ``make preflight`` runs it
alone). Failures (exit status 1) are what makes veRL 0.9.1 fail later with a less helpful message:

* **NVIDIA driver too old for CUDA 13.** veRL's GPU extras pin torch 2.11.0 built for CUDA 13.0, vLLM 0.24's
  extensions link ``libcudart.so.13`` and the ``fsdp`` extra pulls ``cupy-cuda13x``: the driver must report
  ``CUDA Version: 13.0`` or newer in ``nvidia-smi`` (Linux driver ≥ 580.65.06).
* torch does not see ``--gpus`` GPUs; vLLM or flash-attn do not import (the error is shown).
* a data file is missing, or a row has more images than vLLM is told to accept per prompt (``--max-images``).

Warnings do not stop the run: less free disk under ``--output-dir`` than the run writes (checkpoints with optimizer
state, 12 bytes per parameter each, plus merged bf16 copies, plus 10 GB), a local filesystem for the outputs of a
multi-node run, or a wandb logger without ``WANDB_API_KEY``. With ``--smoke`` (a CPU run) the GPU checks are skipped.
The checks run on this node only; on a multi-node cluster run ``make preflight`` on every node.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REQUIRED_CUDA = (13, 0)
# NVIDIA's minimum Linux driver for CUDA 13.0 (CUDA Toolkit 13.0 release notes, table 3).
REQUIRED_DRIVER = "580.65.06"
GPU_INSTALL = "see README, 'GPU install' (make install-gpu)"
CHECKPOINT_BYTES_PER_PARAMETER = 12  # fp32 weights + AdamW's two fp32 moments, as veRL's FSDP checkpoints hold them
MERGED_BYTES_PER_PARAMETER = 2  # veRL's model merger writes bf16
DISK_MARGIN_GB = 10.0  # metrics, generations, logs
SMOKE_DISK_GB = 1.0
# Filesystems that only this node sees (anything else, e.g. nfs, lustre, gpfs, beegfs, cephfs, fuse, is assumed shared).
LOCAL_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "f2fs", "ramfs"})
GPU_MODULES = ("vllm", "flash_attn")


@dataclass(frozen=True)
class Finding:
    """One check's outcome: ``level`` is ``ok``, ``warn`` or ``fail``."""

    level: str
    message: str
    fix: str = ""

    def line(self) -> str:
        text = f"preflight {self.level.upper():4}  {self.message}"
        return f"{text}. Fix: {self.fix}" if self.fix else text


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def parse_nvidia_smi(text: str) -> tuple[str | None, str | None]:
    """``(driver version, CUDA version)`` from the header that ``nvidia-smi`` prints, None where absent."""
    driver = re.search(r"Driver Version:\s*([\d.]+)", text)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", text)
    return (driver.group(1) if driver else None, cuda.group(1) if cuda else None)


def check_driver(nvidia_smi_output: str | None) -> Finding:
    """The driver must support CUDA 13.0; ``None`` means ``nvidia-smi`` could not be run."""
    upgrade = (
        f"install an NVIDIA driver >= {REQUIRED_DRIVER} (CUDA 13.0), or on a data-centre GPU NVIDIA's CUDA 13 "
        "forward-compatibility package (cuda-compat-13-0) where it supports your driver branch"
    )
    if nvidia_smi_output is None:
        return Finding("fail", "nvidia-smi not found or failed: no usable NVIDIA driver on this node", upgrade)
    driver, cuda = parse_nvidia_smi(nvidia_smi_output)
    if cuda is None:
        return Finding("fail", f"nvidia-smi does not report a CUDA version (driver {driver})", upgrade)
    if _version(cuda)[:2] < REQUIRED_CUDA:
        return Finding(
            "fail",
            f"NVIDIA driver {driver} supports CUDA {cuda}; veRL 0.9.1's torch 2.11 (cu130), vLLM 0.24 "
            "(libcudart.so.13) and cupy-cuda13x need CUDA 13.0",
            upgrade,
        )
    return Finding("ok", f"NVIDIA driver {driver}, CUDA {cuda}")


def check_torch(probe: Mapping[str, Any], gpus: int) -> list[Finding]:
    """``probe``: ``error`` (import failed), ``version``, ``cuda`` (torch.version.cuda), ``devices``."""
    if probe.get("error"):
        return [Finding("fail", f"torch does not import: {probe['error']}", GPU_INSTALL)]
    findings = []
    version, cuda, devices = str(probe.get("version")), probe.get("cuda"), int(probe.get("devices") or 0)
    if cuda is None or _version(str(cuda))[:1] != REQUIRED_CUDA[:1]:
        findings.append(
            Finding(
                "fail", f"torch {version} is built for CUDA {cuda}, not 13.x", f"torch==2.11.0 from PyPI; {GPU_INSTALL}"
            )
        )
    if devices < gpus:
        findings.append(
            Finding(
                "fail",
                f"torch sees {devices} GPU(s), the run uses {gpus} per node",
                "check CUDA_VISIBLE_DEVICES and the driver (nvidia-smi), or set N_GPUS_PER_NODE",
            )
        )
    if not findings:
        findings.append(Finding("ok", f"torch {version} (CUDA {cuda}) sees {devices} GPU(s)"))
    return findings


def check_imports(errors: Mapping[str, str | None]) -> list[Finding]:
    """``errors``: module name -> None when it imported, else the error text."""
    return [
        Finding("ok", f"{name} imports")
        if error is None
        else Finding("fail", f"{name} does not import: {error}", GPU_INSTALL)
        for name, error in errors.items()
    ]


def required_disk_gb(params_billion: float, checkpoints: int, merged: int) -> float:
    """What a run writes under its output folder, in GB (10^9 bytes)."""
    per_checkpoint = CHECKPOINT_BYTES_PER_PARAMETER * params_billion
    return checkpoints * per_checkpoint + merged * MERGED_BYTES_PER_PARAMETER * params_billion + DISK_MARGIN_GB


def check_disk(path: Path, free_bytes: int, need_gb: float) -> Finding:
    free_gb = free_bytes / 1e9
    if free_gb < need_gb:
        return Finding(
            "warn",
            f"{free_gb:.0f} GB free under {path}; this run writes up to {need_gb:.0f} GB (checkpoints with optimizer "
            "state, merged copies)",
            "set OUTPUT_DIR to a larger disk, or lower trainer.max_actor_ckpt_to_keep",
        )
    return Finding("ok", f"{free_gb:.0f} GB free under {path} (need about {need_gb:.0f} GB)")


def filesystem_type(path: Path, mounts: str) -> str | None:
    """The type of the filesystem holding ``path``, from ``/proc/mounts`` text (longest matching mount point)."""
    best, best_type = "", None
    resolved = str(path)
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fields[2]
    return best_type


def check_shared_outputs(path: Path, nnodes: int, fs_type: str | None) -> Finding | None:
    if nnodes <= 1:
        return None
    if fs_type in LOCAL_FILESYSTEMS:
        return Finding(
            "warn",
            f"NNODES={nnodes} but {path} is on a local {fs_type} filesystem: the TaskRunner and checkpoint shards "
            "may be written on other nodes",
            "set OUTPUT_DIR and DATA_ROOT to a filesystem every node mounts at the same path",
        )
    return Finding("ok", f"{path} is on {fs_type} (assumed shared between nodes)")


def check_logger_credentials(loggers: str, environ: Mapping[str, str], netrc: Path) -> Finding | None:
    if "wandb" not in loggers.split(","):
        return None
    if environ.get("WANDB_API_KEY"):
        return Finding("ok", "WANDB_API_KEY is set (forwarded to every Ray process)")
    if netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="replace"):
        return Finding(
            "warn",
            "wandb credentials only in ~/.netrc of this node: a TaskRunner on another node cannot log in",
            "export WANDB_API_KEY in this shell (the recipes forward it)",
        )
    return Finding("warn", "LOGGER has wandb but WANDB_API_KEY is not set", "export WANDB_API_KEY in this shell")


def images_per_row(path: Path, image_key: str = "images") -> int:
    """The largest number of images in one row of a veRL parquet file (reads the image paths, not the bytes)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    leaves = [
        parquet.schema.column(i).path
        for i in range(parquet.metadata.num_columns)
        if parquet.schema.column(i).path.split(".")[0] == image_key
    ]
    if not leaves:
        return 0
    # The shortest leaf (e.g. images.list.element.path) gives the list lengths without reading the image bytes.
    column = parquet.read(columns=[min(leaves, key=lambda leaf: (leaf.endswith(".bytes"), len(leaf)))]).column(0)
    longest = pc.max(pc.list_value_length(column)).as_py() if len(column) else 0
    return int(longest or 0)


def check_data(files: Sequence[Path], max_images: int | None) -> list[Finding]:
    findings = []
    for path in files:
        if not path.is_file():
            findings.append(
                Finding("fail", f"data file {path} does not exist", "run make data-<name> with the same DATA_ROOT")
            )
            continue
        if max_images is not None:
            count = images_per_row(path)
            if count > max_images:
                findings.append(
                    Finding(
                        "fail",
                        f"{path} has rows with {count} images; vLLM is told to accept {max_images} per prompt",
                        f"append +actor_rollout_ref.rollout.engine_kwargs.vllm.limit_mm_per_prompt.image={count}",
                    )
                )
                continue
        findings.append(Finding("ok", f"{path}"))
    return findings


# ---------------------------------------------------------------------------------------- what runs on the node


def run_nvidia_smi() -> str | None:
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        done = subprocess.run([executable], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def probe_torch() -> dict[str, Any]:
    try:
        import torch

        return {
            "version": torch.__version__,
            "cuda": torch.version.cuda,
            "devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        }
    except Exception as error:  # any import-time failure is the finding
        return {"error": f"{type(error).__name__}: {error}"}


def probe_imports(names: Iterable[str], importer: Callable[[str], object] = importlib.import_module) -> dict:
    errors: dict[str, str | None] = {}
    for name in names:
        try:
            importer(name)
            # flash-attn's CUDA kernels load on first use of this symbol, not at `import flash_attn`.
            if name == "flash_attn":
                importer("flash_attn.flash_attn_interface")
            errors[name] = None
        except Exception as error:
            last = traceback.format_exception_only(type(error), error)[-1].strip()
            errors[name] = last
    return errors


def nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def run_checks(args: argparse.Namespace) -> list[Finding]:
    findings: list[Finding] = []
    if not args.smoke:
        findings.append(check_driver(run_nvidia_smi()))
        findings += check_torch(probe_torch(), args.gpus)
        findings += check_imports(probe_imports(GPU_MODULES))
    if args.output_dir is not None:
        output = nearest_existing(args.output_dir.expanduser().resolve())
        need = SMOKE_DISK_GB if args.smoke else required_disk_gb(args.params_b, args.checkpoints, args.merged)
        findings.append(check_disk(args.output_dir, shutil.disk_usage(output).free, need))
        mounts = Path("/proc/mounts").read_text() if Path("/proc/mounts").is_file() else ""
        shared = check_shared_outputs(args.output_dir, args.nnodes, filesystem_type(output, mounts))
        findings += [shared] if shared else []
    credentials = check_logger_credentials(args.logger, os.environ, Path.home() / ".netrc")
    findings += [credentials] if credentials else []
    findings += check_data([Path(file) for file in args.data], args.max_images)
    return findings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=8, help="GPUs per node the run uses (N_GPUS_PER_NODE)")
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--output-dir", type=Path, help="where the run writes (OUTPUT_DIR)")
    parser.add_argument("--params-b", type=float, default=8.29, help="model parameters in billions (7B: 8.29)")
    parser.add_argument("--checkpoints", type=int, default=2, help="checkpoints kept with optimizer state")
    parser.add_argument("--merged", type=int, default=1, help="merged bf16 copies (one per evaluated checkpoint)")
    parser.add_argument("--logger", default="console", help="veRL loggers, comma-separated (LOGGER)")
    parser.add_argument("--data", nargs="*", default=[], help="parquet files the run reads")
    parser.add_argument("--max-images", type=int, help="images per prompt vLLM accepts (checked against --data)")
    parser.add_argument("--smoke", action="store_true", help="a CPU run: skip the GPU checks")
    args = parser.parse_args(argv)
    findings = run_checks(args)
    for finding in findings:
        print(finding.line(), file=sys.stderr)
    failed = [finding for finding in findings if finding.level == "fail"]
    if failed:
        print(f"preflight: {len(failed)} problem(s) above; PREFLIGHT=0 skips these checks", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
