"""Reproduce the study's results table on FER2013 (the same as ``skfer reproduce``).

    python examples/reproduce_table.py --preset cpu --out runs/cpu
    python examples/reproduce_table.py --quick          # a two-minute smoke run

Writes results.md (the table), results.json (every number, timing and choice),
confusion_matrix.png and accuracy_curves.png into --out. Presets: quick, cpu (all of Training,
under an hour on 2 cores, weights from ../shared/weights), paper (the study's backbones at
224 px: a GPU and internet access for the weights). ``--help`` lists the options.
"""

from __future__ import annotations

import sys

from skfer.cli import main


def reproduce_table(argv: list[str]) -> int:
    """Run ``skfer reproduce`` with ``argv``; ``--quick`` stands for ``--preset quick``."""
    arguments = [argument for argument in argv if argument != "--quick"]
    if len(arguments) < len(argv):
        arguments += ["--preset", "quick"]
    return main(["reproduce", *arguments])


if __name__ == "__main__":
    sys.exit(reproduce_table(sys.argv[1:]))
