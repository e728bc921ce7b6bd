"""Token-credit methods in pure torch (no veRL import, nothing from the rest of ``verl_tor``), in the spirit of
veRL's ``core_algos``: shared building blocks and one module per method, each reading like its paper.

    scores.py      reasoning score (top-p / full entropy), perception scores (|Δ|, k3) from two log-probs
    selection.py   top-fraction selection, scope batch or response
    tor.py         ToR (arXiv 2603.25077), Eq. 5-9, set weights
    grpo.py        GRPO: every weight 1 (the baseline under identical settings)
    entropy_top20.py  the 80/20 paper (arXiv 2506.01939): top 20 % of the batch by entropy
    vppo.py        VPPO (arXiv 2510.09285): top 40 % per response by k3, trajectory advantage scaling
    pgpo.py        PGPO (arXiv 2604.01840): threshold-gated, mass-conserving soft weights
    registry.py    name → preset (``tor.method``)
    config.py      the ``tor:`` section: preset + overrides, checked
    weights.py     scores → weights for any resolved config
"""
