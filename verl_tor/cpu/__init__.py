"""The opt-in CPU backend: a veRL platform ``cpu`` (``VERL_PLATFORM=cpu``) and an ``hf`` rollout.

It exists so that veRL's real trainer runs end to end on CPU machines (tests, the demo, ``SMOKE=1`` recipes); a real
run never needs it. The plugin only registers both; neither does anything unless selected.
"""
