"""Before ``make install-gpu`` downloads anything: can this node build flash-attn 2.8.3, and with which settings.

    python3 -m verl_tor.launch.build_check [--wheel FLASH_ATTN_WHEEL]

Runs with the interpreter that will create the GPU venv, from the repository root, on the standard library alone
(nothing is installed yet). Prints one line of ``NAME=value`` settings for the build on stdout, e.g.
``FLASH_ATTN_CUDA_ARCHS=90 MAX_JOBS=12 FLASH_ATTENTION_FORCE_BUILD=TRUE``, and one line per check on stderr; exits 1
when a check fails, naming what to install or set.

Why each check (flash-attn 2.8.3's ``setup.py``, read for this):

* **Python 3.10-3.12**: what the GPU stack (torch 2.11, vLLM 0.24) publishes wheels for.
* **nvcc 13.x** (``CUDA_HOME``, ``CUDA_PATH``, ``nvcc`` on ``PATH``, ``/usr/local/cuda``: torch's own search order):
  torch 2.11 is built for CUDA 13.0 and refuses to build an extension with another CUDA major version.
* **a C++ compiler** (``CXX``, else ``c++``) and **Python's headers** (``Python.h``): the extension's host code.
* **FLASH_ATTN_CUDA_ARCHS**: setup.py compiles every kernel once per architecture in this list, default
  ``80;90;100;120`` (four times the work); it accepts exactly those four values and silently skips any other.
  The GPUs of this node (``nvidia-smi --query-gpu=compute_cap``) decide: 8.x -> 80 (an sm_80 binary runs on 8.6
  and 8.9), 9.0 -> 90, 10.x -> 100, 12.x -> 120. A value you set is checked against the four, never replaced.
* **MAX_JOBS**: parallel compilations, ≈ 8 GB of memory each (setup.py's own estimate is 8-9 GB), at most one per
  core; a value you set is kept.
* **FLASH_ATTENTION_FORCE_BUILD=TRUE**: otherwise setup.py first downloads a prebuilt wheel named after torch's CUDA
  version, and maps every CUDA other than 11 to ``cu12``: for torch 2.11 (CUDA 13) it asks for a
  ``+cu12torch2.11`` wheel, a CUDA 12 build that does not exist (and on an air-gapped node the download only
  times out). Building is what happens anyway.

With ``--wheel`` (``FLASH_ATTN_WHEEL``: a wheel built elsewhere, e.g. for an air-gapped node) nothing is compiled:
only the Python version and the wheel's file name (flash-attn 2.8.3, this Python, this machine; torch 2.11 and
CUDA 13 where its local version names them) are checked.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path

PYTHON_RANGE = ((3, 10), (3, 12))
CUDA_MAJOR = 13
FLASH_ATTN_VERSION = "2.8.3"
# flash-attn 2.8.3's setup.py: the values of FLASH_ATTN_CUDA_ARCHS it compiles for (any other is ignored).
FLASH_ATTN_ARCHS = ("80", "90", "100", "120")
# Compute capability major -> the flash-attn architecture whose binary runs on it (same major, lower or equal minor).
ARCH_OF_MAJOR = {8: "80", 9: "90", 10: "100", 12: "120"}
GB_PER_JOB = 8.0


class CheckFailed(Exception):
    """A check failed; the message says what to install or set."""


def _log(level: str, message: str) -> None:
    print(f"build-check {level:4}  {message}", file=sys.stderr)


def check_python(version: Sequence[int]) -> str:
    low, high = PYTHON_RANGE
    found = ".".join(str(part) for part in version[:3])
    if not low <= tuple(version[:2]) <= high:
        raise CheckFailed(
            f"Python {found}: the GPU stack (torch 2.11, vLLM 0.24) has wheels for Python "
            f"{low[0]}.{low[1]}-{high[0]}.{high[1]}. Fix: make install-gpu PYTHON3=python3.12 (or 3.10, 3.11)"
        )
    return f"Python {found}"


def find_nvcc(environ: Mapping[str, str]) -> Path:
    """nvcc in torch's search order: ``CUDA_HOME``, ``CUDA_PATH``, ``nvcc`` on ``PATH``, ``/usr/local/cuda``."""
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        if environ.get(variable):
            return Path(environ[variable]) / "bin" / "nvcc"
    on_path = shutil.which("nvcc", path=environ.get("PATH", ""))
    if on_path:
        return Path(on_path)
    return Path("/usr/local/cuda/bin/nvcc")


def nvcc_version(output: str) -> tuple[int, int] | None:
    """``(major, minor)`` from ``nvcc --version`` output (``Cuda compilation tools, release 13.0, V13.0.88``)."""
    found = re.search(r"release (\d+)\.(\d+)", output)
    return (int(found.group(1)), int(found.group(2))) if found else None


def _run(command: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """stdout of ``command``, or None when it cannot be run or fails."""
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=60, env=dict(environ), check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def check_nvcc(environ: Mapping[str, str]) -> str:
    nvcc = find_nvcc(environ)
    install = (
        f"install the CUDA {CUDA_MAJOR}.x toolkit (nvcc) and set CUDA_HOME to it, e.g. CUDA_HOME=/usr/local/cuda-13.0; "
        "or build the wheel elsewhere and pass FLASH_ATTN_WHEEL (docs/gpu-install.md)"
    )
    output = _run([str(nvcc), "--version"], environ)
    if output is None:
        raise CheckFailed(f"no working nvcc (looked for {nvcc}). Fix: {install}")
    version = nvcc_version(output)
    if version is None or version[0] != CUDA_MAJOR:
        found = "an unknown version" if version is None else f"CUDA {version[0]}.{version[1]}"
        raise CheckFailed(
            f"{nvcc} is {found}; torch 2.11 is built for CUDA 13.0 and builds extensions only with nvcc "
            f"{CUDA_MAJOR}.x. Fix: {install}"
        )
    return f"nvcc {version[0]}.{version[1]} ({nvcc})"


def check_compiler(environ: Mapping[str, str]) -> str:
    name = environ.get("CXX") or "c++"
    compiler = shutil.which(name, path=environ.get("PATH", "")) if not os.path.isabs(name) else name
    output = _run([compiler, "--version"], environ) if compiler else None
    if output is None:
        raise CheckFailed(
            f"no working C++ compiler ({'CXX=' + name if environ.get('CXX') else 'c++ on PATH'}). Fix: install g++ "
            "(apt install g++, dnf install gcc-c++) or set CXX"
        )
    return f"C++ compiler {compiler}: {output.splitlines()[0] if output else ''}"


def check_python_headers(include_dir: str) -> str:
    header = Path(include_dir) / "Python.h"
    if not header.is_file():
        minor = f"{sys.version_info.major}.{sys.version_info.minor}"
        raise CheckFailed(
            f"no {header}: Python's headers are missing. Fix: apt install python{minor}-dev "
            f"(dnf install python{minor.replace('.', '')}-devel), or use a Python built with them (conda, pyenv)"
        )
    return f"Python headers {header}"


def archs_from_compute_caps(output: str) -> list[str]:
    """flash-attn architectures for the GPUs in ``nvidia-smi --query-gpu=compute_cap --format=csv,noheader``."""
    archs: list[str] = []
    for line in output.split():
        major = int(line.split(".")[0])
        if major not in ARCH_OF_MAJOR:
            raise CheckFailed(
                f"a GPU of compute capability {line}: flash-attn {FLASH_ATTN_VERSION} builds for "
                f"{', '.join(FLASH_ATTN_ARCHS)} (Ampere, Hopper, Blackwell) only"
            )
        if ARCH_OF_MAJOR[major] not in archs:
            archs.append(ARCH_OF_MAJOR[major])
    return archs


def cuda_archs(environ: Mapping[str, str]) -> str:
    """``FLASH_ATTN_CUDA_ARCHS``: the user's (checked), else the architectures of this node's GPUs."""
    given = environ.get("FLASH_ATTN_CUDA_ARCHS")
    if given:
        unknown = [arch for arch in given.split(";") if arch not in FLASH_ATTN_ARCHS]
        if unknown:
            raise CheckFailed(
                f"FLASH_ATTN_CUDA_ARCHS={given}: flash-attn {FLASH_ATTN_VERSION} accepts "
                f"{';'.join(FLASH_ATTN_ARCHS)} (semicolon-separated) and silently builds nothing for "
                f"{', '.join(unknown)}"
            )
        return given
    nvidia_smi = shutil.which("nvidia-smi", path=environ.get("PATH", ""))
    output = _run([nvidia_smi, "--query-gpu=compute_cap", "--format=csv,noheader"], environ) if nvidia_smi else None
    if not output or not output.split():
        raise CheckFailed(
            "no GPU visible (nvidia-smi --query-gpu=compute_cap) to choose the architectures from. Fix: set "
            "FLASH_ATTN_CUDA_ARCHS to the target GPUs' (80 Ampere, 90 Hopper, 100 B200/B300, 120 RTX 50xx), e.g. "
            "FLASH_ATTN_CUDA_ARCHS=90"
        )
    return ";".join(archs_from_compute_caps(output))


def available_memory_gb(meminfo: str) -> float:
    """``MemAvailable`` from ``/proc/meminfo`` text, in GB (10^9 bytes)."""
    found = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo, re.MULTILINE)
    if not found:
        raise CheckFailed("no MemAvailable in /proc/meminfo: set MAX_JOBS (≈ 8 GB of memory per job)")
    return int(found.group(1)) * 1024 / 1e9


def max_jobs(environ: Mapping[str, str], memory_gb: float, cores: int) -> str:
    """``MAX_JOBS``: the user's, else one job per 8 GB of available memory and at most one per core."""
    if environ.get("MAX_JOBS"):
        return environ["MAX_JOBS"]
    return str(max(1, min(cores, int(memory_gb // GB_PER_JOB))))


def check_wheel(wheel: str, version: Sequence[int], machine: str) -> str:
    """A prebuilt wheel's file name (path or URL) must be flash-attn 2.8.3 for this Python and machine."""
    name = wheel.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    found = re.fullmatch(r"flash_attn-([^-+]+)(?:\+([^-]+))?-(cp\d+)-[^-]+-(.+)\.whl", name)
    if not found:
        raise CheckFailed(f"FLASH_ATTN_WHEEL={wheel}: not a flash_attn wheel file name")
    wheel_version, local, python_tag, platform_tag = found.groups()
    wanted = f"cp{version[0]}{version[1]}"
    problems = []
    if wheel_version != FLASH_ATTN_VERSION:
        problems.append(f"flash-attn {wheel_version}, veRL 0.9.1 pins {FLASH_ATTN_VERSION}")
    if python_tag != wanted:
        problems.append(f"built for {python_tag}, this Python is {wanted}")
    if machine not in platform_tag:
        problems.append(f"built for {platform_tag}, this machine is {machine}")
    torch_tag = re.search(r"torch(\d+\.\d+)", local or "")
    if torch_tag and torch_tag.group(1) != "2.11":
        problems.append(f"built against torch {torch_tag.group(1)}, the GPU stack has torch 2.11")
    cuda_tag = re.search(r"cu(\d+)", local or "")
    if cuda_tag and not cuda_tag.group(1).startswith(str(CUDA_MAJOR)):
        problems.append(f"built for CUDA cu{cuda_tag.group(1)}, torch 2.11 uses CUDA {CUDA_MAJOR}")
    if problems:
        raise CheckFailed(f"FLASH_ATTN_WHEEL={name}: " + "; ".join(problems))
    return f"flash-attn wheel {name}"


def settings(
    environ: Mapping[str, str],
    wheel: str | None,
    version: Sequence[int],
    include_dir: str,
    meminfo: str,
    cores: int,
    machine: str,
) -> dict[str, str]:
    """Runs every check (logging each on stderr) and returns the build's environment settings."""
    _log("ok", check_python(version))
    if wheel:
        _log("ok", check_wheel(wheel, version, machine))
        return {}
    for check in (check_nvcc(environ), check_compiler(environ), check_python_headers(include_dir)):
        _log("ok", check)
    memory_gb = available_memory_gb(meminfo)
    found = {
        "FLASH_ATTN_CUDA_ARCHS": cuda_archs(environ),
        "MAX_JOBS": max_jobs(environ, memory_gb, cores),
        "FLASH_ATTENTION_FORCE_BUILD": "TRUE",
    }
    _log(
        "ok",
        f"flash-attn builds for FLASH_ATTN_CUDA_ARCHS={found['FLASH_ATTN_CUDA_ARCHS']} with "
        f"MAX_JOBS={found['MAX_JOBS']} ({memory_gb:.0f} GB available, {cores} cores)",
    )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python3 -m verl_tor.launch.build_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--wheel", default="", help="a prebuilt flash-attn wheel (FLASH_ATTN_WHEEL): skip build checks")
    args = parser.parse_args(argv)
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").is_file() else ""
    try:
        found = settings(
            os.environ,
            args.wheel,
            sys.version_info,
            sysconfig.get_paths()["include"],
            meminfo,
            os.cpu_count() or 1,
            platform.machine(),
        )
    except CheckFailed as failure:
        _log("FAIL", str(failure))
        return 1
    print(" ".join(f"{name}={value}" for name, value in found.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
