"""Evaluation: the rule-based reward of every dataset (``rewards``), the benchmark table (``benchmarks``), the
prompts of each evaluation setting as veRL dataset classes (``prompts``), the LLM judge of ToR's protocol
(``judge``), per-item grades of an evaluation (``grades``), paired statistics (``stats``, numpy only), the paired
comparison (``compare``) and the results report (``report``); plain functions and command lines."""
