"""Converters from public Hugging Face datasets to veRL's RL parquet format (see data_prep/README.md).

Every converter ``data_prep.<name>`` writes rows whose ``data_source`` is ``<name>``. The mappings below give each
``data_source`` its display name; the evaluation report groups validation metrics by them.
"""

TRAINING_SETS = {"geo3k": "Geometry3K", "virl39k": "ViRL39K", "mmk12": "MMK12"}

# The five benchmarks of the paper's Table 4, in its column order.
BENCHMARKS = {
    "mathverse": "MathVerse",
    "mathvision": "MathVision",
    "mathvista": "MathVista",
    "wemath": "WeMath",
    "hallusionbench": "HallusionBench",
}

# Benchmarks used by related work (VPPO, PAPO), not by the paper.
RELATED_BENCHMARKS = {"dynamath": "DynaMath", "logicvista": "LogicVista"}

DATA_SOURCES = {**TRAINING_SETS, **BENCHMARKS, **RELATED_BENCHMARKS}
