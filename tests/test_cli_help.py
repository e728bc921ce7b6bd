"""Every command-line entry point a README names prints its usage as ``python -m <module>``, the way it is run."""

import subprocess
import sys

import pytest

CLI_MODULES = (
    "verl_tor.demo",
    "verl_tor.demo.study",
    "verl_tor.demo.compare",
    "verl_tor.demo.warm_start",
    "verl_tor.inspect",
    "verl_tor.testing.synthetic_data",
    "verl_tor.testing.cpu_overrides",
    "verl_tor.data_prep.geo3k",
    "verl_tor.testing.tiny_model",
    "verl_tor.eval.report",
    "verl_tor.eval.compare",
    "verl_tor.audit",
    "verl_tor.audit.demo",
    "verl_tor.launch.preflight",
    "verl_tor.launch.smoke_summary",
)


@pytest.mark.parametrize("module", CLI_MODULES)
def test_help_names_the_module_it_is_run_as(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"usage: python -m {module} "), result.stdout[:200]


def test_the_demo_usage_lists_the_family_option():
    result = subprocess.run([sys.executable, "-m", "verl_tor.demo", "--help"], capture_output=True, text=True)
    assert "--family" in result.stdout.split("\n\n")[0]
