"""edgecifar: train → export → run small CIFAR-10 classifiers on the edge.

Pipeline, one module (or subpackage) per stage:
    data → zoo → train → evaluate → export → device → benchmark
"""

__version__ = "0.1.0"
