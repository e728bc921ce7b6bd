"""Which data sets the evaluation knows: training sets and benchmarks by ``data_source``, with display names.

Every converter ``verl_tor.data_prep.<name>`` writes rows whose ``data_source`` is ``<name>``; the report groups
validation metrics by them and orders the paper's benchmarks as its Table 4 does.
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
