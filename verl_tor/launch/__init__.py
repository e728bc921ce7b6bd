"""What a run needs around veRL: checks before it (``preflight``), the environment of its Ray workers (``ray_env``)
and counts of what veRL's length filter drops from its data (``prompt_filter``). Not the method, not its glue."""
