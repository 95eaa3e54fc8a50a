"""``python -m nas.predictors.pretrained [NAME ...]``: make pretrained predictors (all by
default) from their recipes, printing each command first."""

import sys

from nas.predictors.pretrained import RECIPES, command, make

for name in sys.argv[1:] or sorted(RECIPES):
    print(command(name), flush=True)
    print("wrote", make(name), flush=True)
