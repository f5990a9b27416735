"""The experiment behind seed002_m1's dropout rates (unstated in the write-up).

    python benchmarks/m1_dropout_experiment.py 0.25,0.5 --runs-dir runs-exp   # first recipe: underfits
    python benchmarks/m1_dropout_experiment.py 0.0,0.0  --runs-dir runs-exp   # no dropout: overfits
    python benchmarks/m1_dropout_experiment.py 0.2,0.2  --runs-dir runs-exp   # the zoo's default since
    python benchmarks/m1_dropout_experiment.py 0.25,0.5 --lr 0.0001           # the Keras cifar10_cnn example's RMSprop lr
    python benchmarks/m1_dropout_experiment.py 0.25,0.5 --val-size 0          # all 50,000 training images

Trains seed002_m1_cnn with the documented recipe (RMSprop, 15 epochs, batch 32, seed 0) and the given
dropout rates (after the conv block, after Dense512), registered under a name that says so. The 0.2,0.2 run
is identical to `edgecifar train seed002_m1_cnn` (same seed, same code path: same weights, same 65.52 %).
Results: benchmarks/results/training_m1_investigation.md.
"""

import argparse

from edgecifar import defaults
from edgecifar.train import train

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("rates", help="two dropout rates, e.g. 0.2,0.2")
ap.add_argument("--runs-dir", default="runs-exp")
ap.add_argument("--val-size", type=int, default=defaults.VAL_SIZE, help="0 trains on all 50,000 images")
ap.add_argument("--lr", type=float, help="override RMSprop's learning rate (default 1e-3)")
args = ap.parse_args()
rates = tuple(float(x) for x in args.rates.split(","))
name = f"seed002_m1_cnn_dropout_{args.rates.replace(',', '_')}"
train("seed002_m1_cnn", model_kwargs={"dropout": rates}, label=name, runs_dir=args.runs_dir, val_size=args.val_size, lr=args.lr)
