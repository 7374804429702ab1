"""`python -m pairforge ...`: the same as the `pairforge` command."""

from pairforge.cli import main

main()
