"""Evaluation: the rule-based reward of every dataset (``rewards``), the optional LLM answer extraction
(``judge``) and the results tables and curves of recipe runs (``report``); plain functions and command lines."""
