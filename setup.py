"""The one part of the package layout pyproject.toml cannot express (everything else is there).

The declarative specs live at the top of the repository (``tasks/``: benchmarks, fine-tuning
datasets, experiments, leaderboard matrices, lm-eval task files) and so does the leaderboard's
submission schema (``leaderboard/schema/``). A wheel ships them inside the package, as
``unlearnbench/_specs/`` and ``unlearnbench/_schema/``, where :func:`unlearnbench.spec.shipped_dir`
finds them; a source checkout reads them where they are. The shipped embedded-world models
(``unlearnbench/toy/weights/``) are package data of ``unlearnbench.toy``.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["unlearnbench", "unlearnbench.*"])
    + ["unlearnbench._specs", "unlearnbench._schema"],
    package_dir={"unlearnbench._specs": "tasks", "unlearnbench._schema": "leaderboard/schema"},
    package_data={
        "unlearnbench._specs": ["*/*.yaml"],
        "unlearnbench._schema": ["*.json"],
        # the shipped embedded-world models (unlearnbench/toy/shipped.py)
        "unlearnbench.toy": ["weights/manifest.json", "weights/*/*"],
    },
)
