"""``python -m verl_tor.demo``: see :mod:`verl_tor.demo.run`."""

from verl_tor.demo.run import main

if __name__ == "__main__":
    main()
