# Data preparation targets (included by the top-level Makefile).
