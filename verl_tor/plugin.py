"""veRL plugin entry point (group ``verl.plugins`` in setup.py).

``import verl`` imports this module in every process veRL starts (driver, TaskRunner, Ray workers), so all of
our registrations and version-guarded patches happen wherever veRL code runs. veRL only logs plugin errors at
debug level; ``tests/test_plugin.py`` checks in a fresh process that everything below did register.
"""

from verl_tor import patches

patches.apply_all()
