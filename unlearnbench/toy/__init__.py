"""The embedded world, in one folder: fictitious people, their facts in several forms, synthetic
fine-tuning tasks, and the tiny Llama (and its retrain oracle) trained on them.

* :mod:`.world` — people, attributes, splits, training statements and probe items per form;
* :mod:`.probes` — the ``adversarial`` and ``icl`` forms, built at probe time from the world;
* :mod:`.tasks` — the stand-ins for GSM8K, AGNews and SST-2 (``arith``, ``topic``, ``sentiment``);
* :mod:`.model` — the model recipe, tokenizer, training, quality gate and model cache;
* :mod:`.preset` — a size of ``tasks/benchmarks/toy.yaml`` made into a world and a recipe, and what
  the ``toy`` benchmark hands methods and the runner.

The plugins ``benchmarks/toy.py`` and ``tasks/synthetic.py`` are thin wrappers over this package;
nothing in ``methods/``, ``attacks/`` or ``probes/`` imports it. Importing this package imports no
torch.
"""
