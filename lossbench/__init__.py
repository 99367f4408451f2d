"""lossbench: loss-landscape visualisation (Li et al., NeurIPS 2018) as a library and a benchmark suite.

Layers, lowest first (a module imports only from layers below it): config -> data, models ->
evaluate -> train -> directions -> surface -> store, plot -> CLI (``python -m lossbench``).
"""

__version__ = "0.1.0"
