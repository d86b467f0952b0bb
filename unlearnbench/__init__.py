"""unlearnbench: does knowledge removed from an LLM stay removed?

Importing the package is cheap: nothing here imports torch. Heavy modules (runner, methods,
attacks, probes) are imported only when they are used.
"""

__version__ = "0.1.0"
