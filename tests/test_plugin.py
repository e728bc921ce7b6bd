"""`import verl` in a fresh process registers everything of ours (veRL only logs plugin errors at debug level)."""

import json
import os
import subprocess
import sys

PROBE = r"""
import json, sys
import verl
loaded_before = {m: m in sys.modules for m in ("verl_tor.trainer", "verl.trainer.ppo.v1", "verl.workers.engine.fsdp.transformer_impl")}
from verl.trainer.ppo.v1 import get_trainer_cls
from verl.models.transformers import qwen2_vl
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead
from verl.utils import config as verl_config
print(json.dumps({
    "config_checks": getattr(verl_config.validate_config, "_verl_tor_patched", False),
    "plugin_loaded": "verl_tor.plugin" in sys.modules,
    "loaded_before": loaded_before,
    "tor_trainers": {mode: [c.__name__ for c in get_trainer_cls(f"tor_{mode}").__mro__[:3]]
                     for mode in ("sync", "colocate_async", "separate_async")},
    "verl_trainers": {mode: get_trainer_cls(mode).__name__ for mode in ("sync", "colocate_async", "separate_async")},
    "qwen2_vl_patched": getattr(qwen2_vl._get_input_embeds, "_verl_tor_patched", False),
    "engine_attached": getattr(FSDPEngineWithLMHead.prepare_model_outputs, "_verl_tor_patched", False),
}))
"""


def test_import_verl_registers_everything_in_a_fresh_process():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["plugin_loaded"]
    # Nothing heavy is imported by `import verl` itself: registrations wait for the module they attach to.
    assert report["loaded_before"] == {
        "verl_tor.trainer": False,
        "verl.trainer.ppo.v1": False,
        "verl.workers.engine.fsdp.transformer_impl": False,
    }
    # A ToR variant of each of veRL's trainer modes: ToR's steps mixed in before the mode's own class, which
    # stays registered under its own name, unchanged.
    verl_trainers = {"sync": "PPOTrainerSync", "colocate_async": "PPOTrainerColocateAsync"}
    verl_trainers["separate_async"] = "PPOTrainerSeparateAsync"
    assert report["verl_trainers"] == verl_trainers
    assert report["tor_trainers"] == {mode: [f"ToR{cls}", "ToRSteps", cls] for mode, cls in verl_trainers.items()}
    assert report["qwen2_vl_patched"]
    assert report["engine_attached"]
    assert report["config_checks"]


def test_plugins_off_means_nothing_registered():
    """The registration really comes from the entry point: with veRL's plugin loading off, it is absent."""
    probe = "import verl, sys; print('verl_tor.plugin' in sys.modules)"
    env = {"VERL_USE_EXTERNAL_PLUGINS": "none", "PATH": ""}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "False"


OFF_PROBE = r"""
import json, sys, warnings
import ray, verl
from verl.trainer.ppo.v1 import get_trainer_cls
from verl.models.transformers import qwen2_vl
from verl.utils import config as verl_config
try:
    get_trainer_cls("tor_sync")
    tor_sync = True
except Exception:
    tor_sync = False
print(json.dumps({
    "plugin_imported": "verl_tor.plugin" in sys.modules,
    "tor_sync": tor_sync,
    "config_checks": getattr(verl_config.validate_config, "_verl_tor_patched", False),
    "qwen2_vl_patched": getattr(qwen2_vl._get_input_embeds, "_verl_tor_patched", False),
    "ray_init_wrapped": getattr(ray.init, "_verl_tor_forwarding", False),
    "verl_tor_modules": sorted(m for m in sys.modules if m.startswith("verl_tor") and m != "verl_tor.plugin"),
}))
"""


def _off_probe(value: str) -> dict:
    env = {**os.environ, "VERL_TOR_DISABLE": value, "VERL_TOR_FORWARD_ENV": "WANDB_API_KEY"}
    # Stock veRL knows no "cpu" platform (ours registers it): let veRL pick its default, as on a GPU node.
    env.pop("VERL_PLATFORM", None)
    result = subprocess.run([sys.executable, "-c", OFF_PROBE], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "stderr": result.stderr}


def test_verl_tor_disable_makes_import_verl_stock_verl():
    """VERL_TOR_DISABLE=1: veRL still imports the entry point, which then registers and patches nothing."""
    off = _off_probe("1")
    assert off["plugin_imported"], "veRL loaded the entry point (the switch is ours, not veRL's)"
    assert off["verl_tor_modules"] == ["verl_tor"], "nothing of ours beyond the package itself was imported"
    assert not off["tor_sync"] and not off["config_checks"] and not off["qwen2_vl_patched"]
    assert not off["ray_init_wrapped"], "VERL_TOR_FORWARD_ENV is ignored when the plugin is off"
    # The same probe with the switch at an "on" value: everything is there (the probe can see the difference).
    on = _off_probe("0")
    assert on["tor_sync"] and on["config_checks"] and on["qwen2_vl_patched"] and on["ray_init_wrapped"]


def test_an_unrecognised_disable_value_warns_and_keeps_the_plugin_on():
    result = _off_probe("maybe")
    assert result["tor_sync"], "not a recognised off value: the plugin stays on"
    assert "VERL_TOR_DISABLE='maybe'" in result["stderr"]
