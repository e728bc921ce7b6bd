"""The actor's weights, as veRL's checkpoint engine streams them, in the layout of the ``hf`` rollout's model.

veRL's FSDP engine hands the rollout vLLM checkpoint keys: transformers 5 keeps a Qwen-style MoE layer's experts
packed (``mlp.experts.gate_up_proj`` ``[E, 2I, H]``, ``mlp.experts.down_proj`` ``[E, H, I]``) and veRL unpacks
them into per-expert ``mlp.experts.{e}.{gate,up,down}_proj.weight`` (``verl.workers.engine.fsdp.utils.
unfuse_moe_params``). The ``hf`` rollout holds the transformers model, so it packs them again.
"""

from __future__ import annotations

import re
from collections import defaultdict

import torch

_EXPERT_KEY = re.compile(
    r"^(?P<base>.+\.mlp\.experts)\.(?P<expert>\d+)\.(?P<proj>gate_proj|up_proj|down_proj)\.weight$"
)


def pack_expert_weights(named_tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``named_tensors`` with every MoE layer's per-expert weights packed as transformers 5 holds them.

    Args:
        named_tensors: HF-named tensors; per-expert ``…mlp.experts.{e}.gate_proj.weight`` ``[I, H]``,
            ``up_proj`` ``[I, H]`` and ``down_proj`` ``[H, I]`` for every expert e of a layer.

    Returns:
        the same tensors, each layer's experts replaced by ``…mlp.experts.gate_up_proj`` ``[E, 2I, H]`` (gate rows
        first) and ``…mlp.experts.down_proj`` ``[E, H, I]``; everything else unchanged.
    """
    packed: dict[str, torch.Tensor] = {}
    experts: dict[str, dict[tuple[int, str], torch.Tensor]] = defaultdict(dict)
    for name, tensor in named_tensors.items():
        match = _EXPERT_KEY.match(name)
        if match is None:
            packed[name] = tensor
        else:
            experts[match["base"]][int(match["expert"]), match["proj"]] = tensor
    for base, parts in experts.items():
        count = 1 + max(expert for expert, _ in parts)
        packed[f"{base}.gate_up_proj"] = torch.stack(
            [torch.cat([parts[e, "gate_proj"], parts[e, "up_proj"]]) for e in range(count)]
        )
        packed[f"{base}.down_proj"] = torch.stack([parts[e, "down_proj"] for e in range(count)])
    return packed
