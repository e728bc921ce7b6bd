"""``verl_tor.launch.build_check``: what ``make install-gpu`` checks before its first download, run against fake
``nvcc``, ``c++`` and ``nvidia-smi`` executables on a fake PATH (the only parts a CPU machine cannot provide)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from verl_tor.launch import build_check

ROOT = Path(__file__).resolve().parents[1]
NVCC_13 = "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 13.0, V13.0.88\n"
NVCC_12 = "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 12.8, V12.8.93\n"
MEMINFO = "MemTotal:       2113470464 kB\nMemAvailable:   1953125000 kB\n"  # 2,000 GB available


def fake(directory: Path, name: str, stdout: str = "", status: int = 0) -> Path:
    """An executable ``directory/name`` that prints ``stdout`` and exits with ``status``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    # printf is a shell builtin: the fake PATH holds nothing else. (No single quotes in the outputs used here.)
    lines = " ".join(f"'{line}'" for line in stdout.splitlines())
    path.write_text("#!/bin/sh\n" + (f"printf '%s\\n' {lines}\n" if lines else "") + f"exit {status}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def node(tmp_path):
    """A build node: nvcc 13.0, g++, one H100, Python headers; returns (environ, include_dir)."""
    bin_dir = tmp_path / "bin"
    fake(bin_dir, "nvcc", NVCC_13)
    fake(bin_dir, "c++", "c++ (GCC) 13.2.0\n")
    fake(bin_dir, "nvidia-smi", "9.0\n9.0\n")
    include = tmp_path / "include"
    include.mkdir()
    (include / "Python.h").write_text("")
    return {"PATH": str(bin_dir)}, str(include)


def run_settings(environ, include, wheel=None, version=(3, 11, 7), cores=64, meminfo=MEMINFO):
    return build_check.settings(environ, wheel, version, include, meminfo, cores, "x86_64")


def test_a_hopper_node_builds_for_90_only_with_jobs_from_memory_and_cores(node):
    environ, include = node
    found = run_settings(environ, include)
    assert found == {"FLASH_ATTN_CUDA_ARCHS": "90", "MAX_JOBS": "64", "FLASH_ATTENTION_FORCE_BUILD": "TRUE"}
    # 100 GB available: 12 jobs of 8 GB, fewer than the 64 cores.
    assert run_settings(environ, include, meminfo="MemAvailable:   97656250 kB\n")["MAX_JOBS"] == "12"
    assert run_settings({**environ, "MAX_JOBS": "3"}, include)["MAX_JOBS"] == "3", "the user's value is kept"


@pytest.mark.parametrize(
    ("caps", "archs"),
    [("8.0\n8.6\n8.9\n", "80"), ("9.0\n10.0\n", "90;100"), ("10.3\n", "100"), ("12.0\n", "120")],
)
def test_compute_capabilities_map_to_the_architectures_flash_attn_accepts(caps, archs):
    assert ";".join(build_check.archs_from_compute_caps(caps)) == archs
    assert set(archs.split(";")) <= set(build_check.FLASH_ATTN_ARCHS)


@pytest.mark.parametrize("caps", ["7.0\n", "11.0\n"])
def test_gpus_flash_attn_does_not_build_for_fail(caps):
    with pytest.raises(build_check.CheckFailed, match=f"compute capability {caps.strip()}"):
        build_check.archs_from_compute_caps(caps)


def test_a_given_arch_list_is_checked_not_replaced(node):
    environ, include = node
    assert run_settings({**environ, "FLASH_ATTN_CUDA_ARCHS": "90;100"}, include)["FLASH_ATTN_CUDA_ARCHS"] == "90;100"
    # flash-attn's setup.py would compile nothing for 86 (it only tests membership of 80, 90, 100, 120).
    with pytest.raises(build_check.CheckFailed, match="silently builds nothing for 86"):
        run_settings({**environ, "FLASH_ATTN_CUDA_ARCHS": "86"}, include)


def test_no_gpu_visible_needs_an_explicit_arch_list(node, tmp_path):
    environ, include = node
    (tmp_path / "bin" / "nvidia-smi").unlink()
    with pytest.raises(build_check.CheckFailed, match="set FLASH_ATTN_CUDA_ARCHS"):
        run_settings(environ, include)
    assert run_settings({**environ, "FLASH_ATTN_CUDA_ARCHS": "90"}, include)["FLASH_ATTN_CUDA_ARCHS"] == "90"


def test_nvcc_must_be_cuda_13_and_cuda_home_comes_first(node, tmp_path):
    environ, include = node
    fake(tmp_path / "bin", "nvcc", NVCC_12)
    with pytest.raises(build_check.CheckFailed, match="is CUDA 12.8"):
        run_settings(environ, include)
    fake(tmp_path / "cuda-13.0" / "bin", "nvcc", NVCC_13)
    assert run_settings({**environ, "CUDA_HOME": str(tmp_path / "cuda-13.0")}, include)
    (tmp_path / "bin" / "nvcc").unlink()
    with pytest.raises(build_check.CheckFailed, match="no working nvcc"):
        run_settings({**environ, "CUDA_HOME": str(tmp_path / "missing")}, include)


def test_a_compiler_and_python_headers_are_required(node, tmp_path):
    environ, include = node
    with pytest.raises(build_check.CheckFailed, match="CXX=clang\\+\\+"):
        run_settings({**environ, "CXX": "clang++"}, include)
    fake(tmp_path / "bin", "c++", status=1)
    with pytest.raises(build_check.CheckFailed, match="no working C\\+\\+ compiler"):
        run_settings(environ, include)
    fake(tmp_path / "bin", "c++", "g++ 12\n")
    with pytest.raises(build_check.CheckFailed, match="Python.h: Python's headers are missing"):
        run_settings(environ, str(tmp_path))


@pytest.mark.parametrize("version", [(3, 9, 18), (3, 13, 1)])
def test_python_outside_the_gpu_stacks_range_fails_first(node, version):
    environ, include = node
    with pytest.raises(build_check.CheckFailed, match=f"Python {'.'.join(map(str, version))}"):
        run_settings(environ, include, version=version)


def test_a_prebuilt_wheel_skips_the_build_checks_but_must_match(tmp_path):
    good = "https://example.org/v0.4/flash_attn-2.8.3+cu130torch2.11-cp311-cp311-linux_x86_64.whl"
    # No nvcc, compiler or GPU on PATH: nothing of the build is needed.
    assert run_settings({"PATH": str(tmp_path)}, str(tmp_path), wheel=good) == {}
    plain = "/wheels/flash_attn-2.8.3-cp311-cp311-linux_x86_64.whl"  # what `pip wheel` writes
    assert run_settings({"PATH": str(tmp_path)}, str(tmp_path), wheel=plain) == {}
    for wrong, reason in [
        ("flash_attn-2.8.3+cu130torch2.11-cp312-cp312-linux_x86_64.whl", "built for cp312, this Python is cp311"),
        ("flash_attn-2.8.3+cu128torch2.11-cp311-cp311-linux_x86_64.whl", "built for CUDA cu128"),
        ("flash_attn-2.8.3+cu130torch2.10-cp311-cp311-linux_x86_64.whl", "against torch 2.10"),
        ("flash_attn-2.8.2-cp311-cp311-linux_x86_64.whl", "flash-attn 2.8.2"),
        ("flash_attn-2.8.3-cp311-cp311-linux_aarch64.whl", "this machine is x86_64"),
        ("flash-attn-2.8.3.tar.gz", "not a flash_attn wheel"),
    ]:
        with pytest.raises(build_check.CheckFailed, match=reason):
            run_settings({"PATH": str(tmp_path)}, str(tmp_path), wheel=wrong)


def test_command_prints_the_settings_line_and_fails_with_the_fix(node):
    environ, _ = node
    command = [sys.executable, "-m", "verl_tor.launch.build_check"]
    python_ok = (3, 10) <= sys.version_info[:2] <= (3, 12)
    env = {**environ, "MAX_JOBS": "5", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    if python_ok and Path(build_check.sysconfig.get_paths()["include"], "Python.h").is_file():
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "FLASH_ATTN_CUDA_ARCHS=90 MAX_JOBS=5 FLASH_ATTENTION_FORCE_BUILD=TRUE"
    failed = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env={**env, "CUDA_HOME": "/nonexistent"}, timeout=60
    )
    assert failed.returncode == 1 and failed.stdout == "", "no settings line when a check fails"
    assert "build-check FAIL" in failed.stderr
    assert "/nonexistent/bin/nvcc" in failed.stderr or not python_ok


def test_make_install_gpu_checks_before_downloading_and_fails_with_its_preflight(tmp_path):
    """The target's order and exit status, with pip replaced by `true` (nothing is downloaded): a failing build check
    stops it before the venv exists; a failing preflight (this machine has no GPU) fails it."""
    venv = tmp_path / "venv-gpu"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_HOME": "/nonexistent"}
    env.pop("MAKEFLAGS", None)
    stopped = subprocess.run(
        ["make", "--no-print-directory", "install-gpu", f"GPU_VENV={venv}", f"PYTHON3={sys.executable}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert stopped.returncode != 0 and "build-check FAIL" in stopped.stderr
    assert not venv.exists(), "nothing created or downloaded before the checks pass"

    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    fake(venv / "bin", "pip")  # every pip step succeeds without doing anything
    wheel = f"flash_attn-2.8.3-cp{sys.version_info[0]}{sys.version_info[1]}-cp{sys.version_info[0]}{sys.version_info[1]}-linux_{build_check.platform.machine()}.whl"
    done = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "install-gpu",
            f"GPU_VENV={venv}",
            f"PYTHON3={sys.executable}",
            f"FLASH_ATTN_WHEEL={wheel}",
            "N_GPUS_PER_NODE=1",
            f"OUTPUT_DIR={tmp_path / 'runs'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode != 0, "the preflight failed (no GPU here), so the install target fails"
    assert "preflight FAIL" in done.stderr
    assert "the packages are installed in" in done.stdout + done.stderr and "preflight above failed" in done.stdout
