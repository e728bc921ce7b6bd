"""Converters from public Hugging Face datasets to veRL's RL parquet format (see verl_tor/data_prep/README.md).

Every converter ``python -m verl_tor.data_prep.<name>`` writes rows whose ``data_source`` is ``<name>``; which
names the evaluation knows is ``verl_tor.eval.benchmarks``.
"""
