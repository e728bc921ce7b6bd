"""Checks a GPU node before a recipe starts Ray: one line per problem, with the fix.

    python -m verl_tor.launch.preflight [--gpus 8] [--nnodes 1] [--output-dir DIR] [--model PATH_OR_ID] [--family F]
        [--params-b 8.29] [--checkpoints 2] [--merged 1] [--logger console,wandb] [--data FILE ...]
        [--max-images 1] [--shared DIR ...] [--forward-env NAMES] [--smoke]

Every recipe runs it first through ``recipes/common.sh`` (``PREFLIGHT=0`` skips it; ``make preflight`` runs it
alone). It checks this node only: on a multi-node cluster run it on every node, with the run's ``--nnodes``, in
the shell that runs (or ran) ``ray start`` there, since Ray's processes inherit that shell's limits and variables.
docs/gpu-install.md, "What the preflight checks", gives each check's reason. Failures (exit status 1):

* torch cannot run a CUDA kernel on ``--gpus`` GPUs (torch decides, not the ``nvidia-smi`` header: under CUDA's
  forward-compatibility package the header keeps the driver's own, older CUDA version, which then only warns),
  or torch is not a CUDA 13 build;
* memory already held on a GPU the run uses (a crashed run), with the processes holding it;
* vLLM's compiled extension (``vllm._C``) or flash-attn's kernels do not load, vLLM's model registry lacks the
  model's architecture, or flash-linear-attention (``fla``) does not import for Qwen3.5;
* ``/dev/shm`` under 1 GiB (Docker's default 64 MB breaks NCCL and vLLM);
* no locked-memory allowance on a multi-node run over InfiniBand/RoCE;
* a one-round NCCL all-reduce across the node's GPUs fails or hangs;
* a data file is missing, or a row has more images than vLLM is told to accept per prompt (``--max-images``);
* ``--forward-env`` names a per-node variable (``verl_tor.launch.ray_env.PER_NODE_VARIABLES``).

Warnings: less free disk under ``--output-dir`` than the run writes, less host memory than the run needs (an
estimate), ``/dev/shm`` smaller than Ray's object store, a low open-file limit, the ``nvidia-smi`` header as above,
a multi-node run whose outputs, data, ``HF_HOME``, model folder or ``--shared`` folders are on a local filesystem,
or a wandb logger without ``WANDB_API_KEY``. With ``--smoke`` (a CPU run) only the disk, data, credentials and
forwarding checks run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verl_tor.launch import ray_env

REQUIRED_CUDA = (13, 0)
# NVIDIA's minimum Linux driver for CUDA 13.0 (CUDA Toolkit 13.0 release notes, table 3).
REQUIRED_DRIVER = "580.65.06"
GPU_INSTALL = "see docs/gpu-install.md (make install-gpu)"
CHECKPOINT_BYTES_PER_PARAMETER = 12  # fp32 weights + AdamW's two fp32 moments, as veRL's FSDP checkpoints hold them
MERGED_BYTES_PER_PARAMETER = 2  # veRL's model merger writes bf16
DISK_MARGIN_GB = 10.0  # metrics, generations, logs
SMOKE_DISK_GB = 1.0
# Filesystems that only this node sees (anything else, e.g. nfs, lustre, gpfs, beegfs, cephfs, fuse, is assumed shared).
LOCAL_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "f2fs", "ramfs"})
GIB = 1024**3
# A GPU nobody uses shows a few hundred MiB at most (driver, persistence daemon); more is someone's CUDA context.
HELD_GPU_MIB = 1024
# NCCL's intra-node shared-memory transport and vLLM's shared-memory broadcast need more than Docker's 64 MB.
MIN_SHM_BYTES = GIB
RAY_OBJECT_STORE_FRACTION = 0.3  # Ray's default object store: 30 % of host memory, in /dev/shm when it fits
MIN_OPEN_FILES = 65536
# Host memory (estimate, docs/gpu-install.md): veRL's FSDP engine loads the model in fp32 on the host, on rank 0 only
# when the input and output embeddings are separate (the others start on the meta device) but on every rank when
# they are tied; a reference model (KL loss) lives on the host in bf16 (FSDP2's CPUOffloadPolicy), sharded over all
# ranks; each GPU's training worker and vLLM engine processes take several GB each.
LOAD_BYTES_PER_PARAMETER = 4
REFERENCE_BYTES_PER_PARAMETER = 2
PROCESS_GB_PER_GPU = 8.0
# The architecture (config.json "architectures") of each model family the recipes train, for vLLM's registry when the
# model is a Hub id not yet downloaded.
FAMILY_ARCHITECTURE = {
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen3_vl_moe": "Qwen3VLMoeForConditionalGeneration",
    "qwen3_5": "Qwen3_5ForConditionalGeneration",
    "qwen3_5_moe": "Qwen3_5MoeForConditionalGeneration",
}
# transformers' Qwen3.5 uses fla's kernels from this version on (utils.import_utils.is_flash_linear_attention_available).
FLA_MIN_VERSION = (0, 2, 2)
ALLREDUCE_TIMEOUT_S = 180


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


# ---------------------------------------------------------------------------------------- driver, torch, GPUs


def parse_nvidia_smi(text: str) -> tuple[str | None, str | None]:
    """``(driver version, CUDA version)`` from the header that ``nvidia-smi`` prints, None where absent."""
    driver = re.search(r"Driver Version:\s*([\d.]+)", text)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", text)
    return (driver.group(1) if driver else None, cuda.group(1) if cuda else None)


def check_driver(nvidia_smi_output: str | None, cuda_works: bool) -> Finding:
    """The ``nvidia-smi`` header against torch's own verdict (``cuda_works``: it ran a kernel on every GPU used).

    Under CUDA's forward-compatibility package (``cuda-compat-13-0``) the header keeps the installed driver's CUDA
    version while CUDA 13 programs run: the header alone only warns; it fails the run when torch's kernel failed."""
    upgrade = (
        f"install an NVIDIA driver >= {REQUIRED_DRIVER} (CUDA 13.0), or on a data-centre GPU NVIDIA's CUDA 13 "
        "forward-compatibility package (cuda-compat-13-0) where it supports your driver branch"
    )
    level = "warn" if cuda_works else "fail"
    if nvidia_smi_output is None:
        return Finding(level, "nvidia-smi not found or failed", "" if cuda_works else upgrade)
    driver, cuda = parse_nvidia_smi(nvidia_smi_output)
    if cuda is None or _version(cuda)[:2] < REQUIRED_CUDA:
        if cuda_works:
            return Finding(
                "warn",
                f"nvidia-smi's header says driver {driver}, CUDA {cuda}, yet torch ran CUDA 13 kernels on every GPU: "
                "a forward-compatibility package is in use (fine, as long as it stays on LD_LIBRARY_PATH of every "
                "Ray process)",
            )
        return Finding(
            "fail",
            f"NVIDIA driver {driver} supports CUDA {cuda}; veRL 0.9.1's torch 2.11 (cu130), vLLM 0.24 "
            "(libcudart.so.13) and cupy-cuda13x need CUDA 13.0",
            upgrade,
        )
    return Finding("ok", f"NVIDIA driver {driver}, CUDA {cuda}")


def cuda_works(probe: Mapping[str, Any], gpus: int) -> bool:
    """torch's verdict: CUDA available, at least ``gpus`` devices, and the kernel ran on each."""
    return (
        not probe.get("error")
        and bool(probe.get("available"))
        and int(probe.get("devices") or 0) >= gpus
        and not probe.get("kernel_error")
    )


def check_torch(probe: Mapping[str, Any], gpus: int) -> list[Finding]:
    """``probe``: ``error`` (import failed), ``version``, ``cuda`` (torch.version.cuda), ``available``
    (torch.cuda.is_available()), ``devices``, ``kernel_error`` (a tiny kernel on each GPU used failed)."""
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
    elif not probe.get("available"):
        findings.append(
            Finding(
                "fail",
                f"torch {version}: torch.cuda.is_available() is False",
                "check the driver (nvidia-smi), CUDA_VISIBLE_DEVICES and, in a container, the NVIDIA runtime (--gpus)",
            )
        )
    elif devices < gpus:
        findings.append(
            Finding(
                "fail",
                f"torch sees {devices} GPU(s), the run uses {gpus} per node",
                "check CUDA_VISIBLE_DEVICES and the driver (nvidia-smi), or set N_GPUS_PER_NODE",
            )
        )
    elif probe.get("kernel_error"):
        findings.append(
            Finding(
                "fail",
                f"torch could not run a CUDA kernel: {probe['kernel_error']}",
                "the driver is too old for CUDA 13, or a GPU is in a bad state (nvidia-smi -q, dmesg)",
            )
        )
    if not findings:
        findings.append(Finding("ok", f"torch {version} (CUDA {cuda}) ran a kernel on {gpus} of {devices} GPU(s)"))
    return findings


def parse_gpu_memory(csv: str) -> list[dict[str, Any]]:
    """Rows of ``nvidia-smi --query-gpu=index,uuid,memory.used,memory.total --format=csv,noheader,nounits``."""
    rows = []
    for line in csv.strip().splitlines():
        index, uuid, used, total = (field.strip() for field in line.split(","))
        rows.append({"index": index, "uuid": uuid, "used_mib": int(used), "total_mib": int(total)})
    return rows


def visible_gpus(rows: Sequence[Mapping[str, Any]], cuda_visible_devices: str | None) -> list[Mapping[str, Any]]:
    """The rows ``CUDA_VISIBLE_DEVICES`` leaves to this run (indices or UUIDs, in its order), all when unset."""
    if cuda_visible_devices is None:
        return list(rows)
    chosen = []
    for entry in (item.strip() for item in cuda_visible_devices.split(",") if item.strip()):
        match = [row for row in rows if entry in (row["index"], row["uuid"]) or row["uuid"].startswith(entry)]
        chosen += match[:1]
    return chosen


def check_gpu_memory(rows: Sequence[Mapping[str, Any]], processes: str) -> Finding | None:
    """GPUs with memory already in use; ``processes``: nvidia-smi's compute-apps query, shown in the message."""
    if not rows:
        return None
    held = [row for row in rows if row["used_mib"] > HELD_GPU_MIB]
    if not held:
        return Finding("ok", f"no memory held on the {len(rows)} GPU(s) this run uses")
    listing = ", ".join(f"GPU {row['index']}: {row['used_mib']} of {row['total_mib']} MiB" for row in held)
    holders = (
        "; ".join(line.strip() for line in processes.strip().splitlines()) or "no process listed (another container?)"
    )
    return Finding(
        "fail",
        f"memory already in use ({listing}); held by pid, name, MiB: {holders}",
        "end the crashed or leftover run (ray stop; kill the pids above), or pick free GPUs with CUDA_VISIBLE_DEVICES",
    )


# ---------------------------------------------------------------------------------------- Python packages


def check_imports(errors: Mapping[str, str | None]) -> list[Finding]:
    """``errors``: module name -> None when it imported, else the error text."""
    return [
        Finding("ok", f"{name} imports")
        if error is None
        else Finding("fail", f"{name} does not import: {error}", GPU_INSTALL)
        for name, error in errors.items()
    ]


# What the run imports on the GPU: vLLM's compiled extension (``import vllm`` alone loads almost nothing) and
# flash-attn; for Qwen3.5 also flash-linear-attention's gated delta rule (what transformers imports).
GPU_MODULES = ("vllm", "vllm._C", "flash_attn")
FLA_MODULE = "fla.ops.gated_delta_rule"


def check_fla(import_error: str | None, version: str | None) -> Finding:
    """Qwen3.5: without fla >= 0.2.2 transformers falls back to its torch gated delta rule, which veRL's packed
    sequences then run one sequence at a time: exact but several times slower on three layers in four, with one
    warning in the worker logs as the only sign. A failure, because the fix is one pip install."""
    fix = "pip install flash-linear-attention==0.5.2 (veRL 0.9.1's fsdp extra pins it)"
    if import_error is not None or version is None:
        return Finding(
            "fail",
            f"flash-linear-attention ({FLA_MODULE}) does not import: {import_error}; Qwen3.5 would train on "
            "transformers' slow torch path",
            fix,
        )
    if _version(version)[:3] < FLA_MIN_VERSION:
        return Finding("fail", f"flash-linear-attention {version}: transformers uses it from 0.2.2 on", fix)
    return Finding("ok", f"flash-linear-attention {version}")


def model_config(model: str | None, hf_home_cache: Callable[[str], str | None]) -> dict[str, Any] | None:
    """The model's config.json: from ``model`` when it is a local folder, else from the Hub cache (no download)."""
    if not model:
        return None
    path = Path(model).expanduser()
    if path.is_dir():
        config = path / "config.json"
        return json.loads(config.read_text()) if config.is_file() else None
    cached = hf_home_cache(model)
    return json.loads(Path(cached).read_text()) if cached else None


def model_architecture(config: Mapping[str, Any] | None, family: str | None) -> str | None:
    if config and config.get("architectures"):
        return str(config["architectures"][0])
    return FAMILY_ARCHITECTURE.get(family or "")


def tied_embeddings(config: Mapping[str, Any] | None) -> bool | None:
    """``tie_word_embeddings`` (top level, else the text config's); None when unknown."""
    if not config:
        return None
    if "tie_word_embeddings" in config:
        return bool(config["tie_word_embeddings"])
    text = config.get("text_config") or {}
    return bool(text["tie_word_embeddings"]) if "tie_word_embeddings" in text else None


def check_vllm_architecture(architecture: str | None, supported: set[str] | str) -> Finding | None:
    """``supported``: vLLM's registry (``ModelRegistry.get_supported_archs()``), or the error reading it."""
    if architecture is None:
        return None
    if isinstance(supported, str):
        return Finding("fail", f"vLLM's model registry cannot be read: {supported}", GPU_INSTALL)
    if architecture not in supported:
        return Finding(
            "fail",
            f"vLLM's model registry has no {architecture} (the model's architecture)",
            "install vllm==0.24.0 (veRL 0.9.1's pin), or check MODEL_PATH",
        )
    return Finding("ok", f"vLLM's registry has {architecture}")


# ---------------------------------------------------------------------------------------- host


def meminfo_bytes(meminfo: str, key: str) -> int | None:
    found = re.search(rf"^{key}:\s+(\d+) kB", meminfo, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else None


def check_shm(shm_bytes: int | None, host_bytes: int | None) -> Finding:
    """``shm_bytes``: the size of ``/dev/shm`` (statvfs), ``host_bytes``: MemTotal."""
    fix = "docker run --shm-size=64g (or --ipc=host); Kubernetes: an emptyDir with medium: Memory mounted at /dev/shm"
    if shm_bytes is None:
        return Finding("fail", "no /dev/shm: NCCL and vLLM need shared memory", fix)
    size = f"/dev/shm is {shm_bytes / GIB:.2f} GiB"
    if shm_bytes < MIN_SHM_BYTES:
        return Finding("fail", f"{size}: NCCL's shared-memory transport and vLLM's broadcast fail below ≈ 1 GiB", fix)
    if host_bytes and shm_bytes < RAY_OBJECT_STORE_FRACTION * host_bytes:
        return Finding(
            "warn",
            f"{size}, less than Ray's object store (30 % of {host_bytes / GIB:.0f} GiB): Ray puts it in /tmp (slower)",
            fix,
        )
    return Finding("ok", size)


def has_infiniband(sys_class: Path) -> bool:
    """InfiniBand or RoCE adapters present (``/sys/class/infiniband`` entries)."""
    return sys_class.is_dir() and any(sys_class.iterdir())


def check_limits(
    nofile: tuple[int, int], memlock: tuple[int, int], nnodes: int, infiniband: bool, unlimited: int
) -> list[Finding]:
    """``nofile``, ``memlock``: (soft, hard) from ``resource.getrlimit``; ``unlimited``: ``resource.RLIM_INFINITY``."""
    findings = []
    soft, hard = nofile
    if hard != unlimited and hard < MIN_OPEN_FILES:
        findings.append(
            Finding(
                "warn",
                f"open files: at most {hard} (ulimit -Hn); Ray and vLLM raise their limit to that, and a many-GPU run "
                "can exceed it (Too many open files)",
                f"raise the hard limit to >= {MIN_OPEN_FILES} (limits.conf, docker run --ulimit nofile=1048576)",
            )
        )
    else:
        findings.append(Finding("ok", f"open files: soft {soft}, hard {'unlimited' if hard == unlimited else hard}"))
    if nnodes > 1 and infiniband and memlock[0] != unlimited:
        findings.append(
            Finding(
                "fail",
                f"locked memory is limited to {memlock[0] // 1024} KiB (ulimit -l) on a multi-node run over "
                "InfiniBand/RoCE: NCCL cannot register its buffers with the adapter",
                "ulimit -l unlimited in the shell that runs ray start on every node (limits.conf memlock, docker "
                "run --ulimit memlock=-1)",
            )
        )
    return findings


def required_host_memory_gb(params_billion: float, gpus: int, nnodes: int, tied: bool | None) -> float:
    """Estimated host memory of one node, in GB: the fp32 load (every rank when ``tied``), a bf16 reference model
    sharded over all ranks, and the worker processes."""
    loaders = gpus if tied else 1
    load = LOAD_BYTES_PER_PARAMETER * params_billion * loaders
    reference = REFERENCE_BYTES_PER_PARAMETER * params_billion / max(nnodes, 1)
    return load + reference + PROCESS_GB_PER_GPU * gpus


def check_host_memory(available_bytes: int | None, need_gb: float, tied: bool | None) -> Finding | None:
    if available_bytes is None:
        return None
    available_gb = available_bytes / 1e9
    load = {True: "every rank loads the model in fp32 (tied embeddings)", False: "rank 0 loads the model in fp32"}
    how = load.get(tied, "rank 0 loads the model in fp32, assuming untied embeddings: no config.json found")
    if available_gb < need_gb:
        return Finding(
            "warn",
            f"{available_gb:.0f} GB of host memory available, the run needs about {need_gb:.0f} GB ({how}, plus "
            "a reference model and the worker processes; an estimate)",
            "free host memory (a leftover run?), or use fewer GPUs per node",
        )
    return Finding("ok", f"{available_gb:.0f} GB of host memory available (need about {need_gb:.0f} GB)")


def check_allreduce(result: Mapping[str, Any] | None, backend: str, world_size: int) -> Finding | None:
    """``result``: ``returncode``, ``output`` (its last lines), ``timed_out`` of ``verl_tor.launch.allreduce``."""
    if result is None:
        return None
    if result.get("timed_out"):
        return Finding(
            "fail",
            f"a {backend} all-reduce across {world_size} GPU(s) hung for {ALLREDUCE_TIMEOUT_S} s",
            "rerun with NCCL_DEBUG=INFO; usual causes: /dev/shm too small, peer-to-peer broken "
            "(try NCCL_P2P_DISABLE=1 to confirm, then fix ACS/IOMMU), a stuck GPU",
        )
    if result.get("returncode"):
        return Finding(
            "fail",
            f"a {backend} all-reduce across {world_size} GPU(s) failed: {result.get('output', '').strip()}",
            "rerun with NCCL_DEBUG=INFO (python -m verl_tor.launch.allreduce --world-size N)",
        )
    return Finding("ok", f"{backend} all-reduce across {world_size} GPU(s)")


# ---------------------------------------------------------------------------------------- disk, folders, data


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


def check_shared(label: str, path: Path, nnodes: int, fs_type: str | None) -> Finding | None:
    """On a multi-node run, ``path`` should be on a network filesystem. Only a warning: from one node nothing can
    tell a shared folder from identical copies at the same path on every node (valid for data and models, not for
    outputs), and a FUSE or unknown type is assumed shared."""
    if nnodes <= 1:
        return None
    if fs_type in LOCAL_FILESYSTEMS:
        return Finding(
            "warn",
            f"NNODES={nnodes} but {label} {path} is on a local {fs_type} filesystem: the TaskRunner, workers and "
            "checkpoint shards may run on any node",
            "put it on a filesystem every node mounts at the same path (or, for data and models only, the same copy "
            "at the same path on every node)",
        )
    return Finding("ok", f"{label} {path} is on {fs_type} (assumed shared between nodes)")


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


def check_forwarding(names: str | None) -> Finding | None:
    """The recipe's ``FORWARD_ENV`` names, refused as ``ray.init`` would refuse them (``ray_env``)."""
    if names is None:
        return None
    try:
        ray_env.forwarded_variables({ray_env.FORWARD_ENV: names})
    except ValueError as refused:
        return Finding("fail", str(refused).replace(ray_env.FORWARD_ENV, "FORWARD_ENV", 1))
    return None


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


def run_nvidia_smi(*arguments: str) -> str | None:
    """``nvidia-smi ARGUMENTS`` stdout, None when it is missing or fails."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        done = subprocess.run([executable, *arguments], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def probe_torch(gpus: int) -> dict[str, Any]:
    """torch's CUDA verdict: availability, devices, and a tiny kernel on each of the first ``gpus`` devices."""
    try:
        import torch

        probe: dict[str, Any] = {
            "version": torch.__version__,
            "cuda": torch.version.cuda,
            "available": torch.cuda.is_available(),
        }
        probe["devices"] = torch.cuda.device_count() if probe["available"] else 0
    except Exception as error:  # any import-time failure is the finding
        return {"error": f"{type(error).__name__}: {error}"}
    for index in range(min(gpus, probe["devices"])):
        try:
            value = torch.arange(4, device=f"cuda:{index}").mul(2).sum().item()
            if value != 12:
                raise RuntimeError(f"2 * (0 + 1 + 2 + 3) gave {value}")
        except Exception as error:
            probe["kernel_error"] = f"GPU {index}: {type(error).__name__}: {error}"
            break
    return probe


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


def probe_vllm_architectures(importer: Callable[[str], Any] = importlib.import_module) -> set[str] | str:
    """vLLM's registered architectures, or the error text."""
    try:
        return set(importer("vllm").ModelRegistry.get_supported_archs())
    except Exception as error:
        return traceback.format_exception_only(type(error), error)[-1].strip()


def installed_version(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def hub_cached_config(model: str) -> str | None:
    """config.json of a Hub model id from the local cache (HF_HOME), never downloading."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(model, "config.json")
    return found if isinstance(found, str) else None


def shm_size(path: Path = Path("/dev/shm")) -> int | None:
    try:
        stats = os.statvfs(path)
    except OSError:
        return None
    return stats.f_blocks * stats.f_frsize


def run_allreduce(backend: str, world_size: int, timeout_s: float = ALLREDUCE_TIMEOUT_S) -> dict[str, Any]:
    """``python -m verl_tor.launch.allreduce`` in its own process group, killed whole when it hangs."""
    command = [sys.executable, "-m", "verl_tor.launch.allreduce", "--backend", backend, "--world-size", str(world_size)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return {"timed_out": True}
    return {"returncode": process.returncode, "output": "\n".join(output.strip().splitlines()[-3:])}


def nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def hf_home(environ: Mapping[str, str]) -> Path:
    """Where the Hub cache lives (huggingface_hub's rule: HF_HOME, else XDG_CACHE_HOME/huggingface)."""
    if environ.get("HF_HOME"):
        return Path(environ["HF_HOME"]).expanduser()
    return Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "huggingface"


def node_checks(args: argparse.Namespace, config: Mapping[str, Any] | None) -> list[Finding]:
    """Everything that needs the GPU stack and this node's hardware (skipped under ``--smoke``)."""
    findings: list[Finding] = []
    # GPU memory first: our own CUDA context (the torch probe) would count as held memory.
    rows = parse_gpu_memory(
        run_nvidia_smi("--query-gpu=index,uuid,memory.used,memory.total", "--format=csv,noheader,nounits") or ""
    )
    processes = run_nvidia_smi("--query-compute-apps=pid,process_name,used_memory", "--format=csv,noheader,nounits")
    held = check_gpu_memory(visible_gpus(rows, os.environ.get("CUDA_VISIBLE_DEVICES")), processes or "")
    probe = probe_torch(args.gpus)
    findings.append(check_driver(run_nvidia_smi(), cuda_works(probe, args.gpus)))
    findings += check_torch(probe, args.gpus)
    findings += [held] if held else []
    findings += check_imports(probe_imports(GPU_MODULES))
    if args.family and args.family.startswith("qwen3_5"):
        fla_error = probe_imports([FLA_MODULE])[FLA_MODULE]
        findings.append(check_fla(fla_error, installed_version("flash-linear-attention")))
    architecture = model_architecture(config, args.family)
    vllm_arch = check_vllm_architecture(architecture, probe_vllm_architectures()) if architecture else None
    findings += [vllm_arch] if vllm_arch else []
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").is_file() else ""
    findings.append(check_shm(shm_size(), meminfo_bytes(meminfo, "MemTotal")))
    findings += check_limits(
        resource.getrlimit(resource.RLIMIT_NOFILE),
        resource.getrlimit(resource.RLIMIT_MEMLOCK),
        args.nnodes,
        has_infiniband(Path("/sys/class/infiniband")),
        resource.RLIM_INFINITY,
    )
    if args.params_b:
        tied = tied_embeddings(config)
        need = required_host_memory_gb(args.params_b, args.gpus, args.nnodes, tied)
        memory = check_host_memory(meminfo_bytes(meminfo, "MemAvailable"), need, tied)
        findings += [memory] if memory else []
    backend_ready = args.allreduce_backend != "nccl" or cuda_works(probe, args.gpus)
    if args.gpus > 0 and backend_ready:
        result = run_allreduce(args.allreduce_backend, args.gpus)
        findings += [check_allreduce(result, args.allreduce_backend, args.gpus)]
    return findings


def run_checks(args: argparse.Namespace) -> list[Finding]:
    findings: list[Finding] = []
    config = None
    if args.model:
        try:
            config = model_config(args.model, hub_cached_config)
        except (OSError, ValueError) as error:
            findings.append(Finding("fail", f"cannot read the config.json of {args.model}: {error}"))
    if not args.smoke:
        findings += node_checks(args, config)
    shared: list[tuple[str, Path]] = []
    if args.output_dir is not None:
        output = nearest_existing(args.output_dir.expanduser().resolve())
        need = SMOKE_DISK_GB if args.smoke else required_disk_gb(args.params_b or 0, args.checkpoints, args.merged)
        findings.append(check_disk(args.output_dir, shutil.disk_usage(output).free, need))
        shared.append(("OUTPUT_DIR", args.output_dir))
    if not args.smoke:
        shared += [("data", Path(file)) for file in args.data] + [("folder", Path(path)) for path in args.shared]
        shared.append(("HF_HOME", hf_home(os.environ)))
        if args.model and Path(args.model).expanduser().is_dir():
            shared.append(("model folder", Path(args.model)))
    mounts = Path("/proc/mounts").read_text() if Path("/proc/mounts").is_file() else ""
    for label, path in shared:
        resolved = nearest_existing(path.expanduser().resolve())
        finding = check_shared(label, path, args.nnodes, filesystem_type(resolved, mounts))
        findings += [finding] if finding else []
    for finding in (
        check_logger_credentials(args.logger, os.environ, Path.home() / ".netrc"),
        check_forwarding(args.forward_env),
    ):
        findings += [finding] if finding else []
    findings += check_data([Path(file) for file in args.data], args.max_images)
    return findings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verl_tor.launch.preflight",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--gpus", type=int, default=8, help="GPUs per node the run uses (N_GPUS_PER_NODE)")
    parser.add_argument(
        "--nnodes", type=int, default=1, help="nodes of the run (NNODES): shared-folder checks when > 1"
    )
    parser.add_argument("--output-dir", type=Path, help="where the run writes (OUTPUT_DIR)")
    parser.add_argument("--model", help="the model loaded: a local folder or a Hub id (MODEL_PATH)")
    parser.add_argument("--family", choices=sorted(FAMILY_ARCHITECTURE), help="the model's family (recipes' table)")
    parser.add_argument("--params-b", type=float, help="model parameters in billions (7B: 8.29): disk and memory")
    parser.add_argument("--checkpoints", type=int, default=2, help="checkpoints kept with optimizer state")
    parser.add_argument("--merged", type=int, default=1, help="merged bf16 copies (one per evaluated checkpoint)")
    parser.add_argument("--logger", default="console", help="veRL loggers, comma-separated (LOGGER)")
    parser.add_argument("--data", nargs="*", default=[], help="parquet files the run reads")
    parser.add_argument("--max-images", type=int, help="images per prompt vLLM accepts (checked against --data)")
    parser.add_argument("--shared", nargs="*", default=[], help="more folders every node must see (DATA_ROOT)")
    parser.add_argument("--forward-env", help="names the run forwards to Ray (FORWARD_ENV): per-node ones fail")
    parser.add_argument(
        "--allreduce-backend", default="nccl", choices=("nccl", "gloo"), help="gloo: the same check on CPU processes"
    )
    parser.add_argument("--smoke", action="store_true", help="a CPU run: skip the GPU and host checks")
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
