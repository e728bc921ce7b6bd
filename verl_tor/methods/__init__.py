"""Token-credit methods in pure torch (no veRL import, nothing from the rest of ``verl_tor``): one module per method,
each reading like its paper."""
