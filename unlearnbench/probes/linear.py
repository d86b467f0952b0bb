"""``linear`` — linear probes: is an attribute value linearly decodable from a layer's residual stream?

For every decoder block ``L`` and every attribute ``a`` (city, employer, ...) a multinomial logistic
regression (scikit-learn ``LogisticRegression``, L2, lbfgs, on standardised features,
``random_state=seed``) is trained on the retained people's items of attribute ``a`` — every
person the models keep where the benchmark offers them (``benchmark.training_items(form)``; the
embedded world: all non-forget people), else the retain split's —,

    x = standardise(h_L),   P(v | x) = softmax_v(W_v · x + b_v),   loss = CE + ||W||² / (2C),

where ``h_L`` is block L's output at the last prompt token (the position that predicts the
answer; :func:`unlearnbench.hidden.last_prompt_states`) and the classes ``v`` are the values of
``a`` seen among the training people. It then predicts the value of each item of the split being
scored: ``acc@L`` = 1 if the prediction is the item's answer, else 0. The people being scored
are always left out of training (scoring the neighbour or retain split trains on the other kept
people); where the training items are the scored split itself (a benchmark without
``training_items``), the probe is trained and tested across ``folds`` grouped folds over people
(scikit-learn ``GroupKFold`` by ``entity_id``). Every figure is held out: no person is ever in
both the training and the test part. Aggregates per split (item ``*``): ``best_layer`` (argmax over L of
mean ``acc@L``, ties: the earliest), ``best_acc`` (that mean), ``majority`` (accuracy of always
predicting the most frequent training value of the item's attribute, ties: the alphabetically
first: the chance floor) and ``coverage`` (the fraction of items whose value occurs among the
training people at all: the ceiling, since a value never seen in training cannot be predicted and
counts as wrong). The retrain oracle's ``best_acc`` on the forget split is the floor that
"knowledge is gone" means; an unlearned model well above it still encodes the forgotten values.

Paper: linear classifier probes, Alain & Bengio 2016, "Understanding intermediate layers using
linear classifier probes" (arXiv 1610.01644); as a white-box check that deleted facts are not
still in the hidden states: Patil, Hase & Bansal 2023 (arXiv 2309.17410), whose attacks read
deleted answers from intermediate layers.

Deviations and limits: Alain & Bengio train on the task's labels directly; here the labels are
attribute values, so the probe needs a benchmark whose items name a person (``entity_id`` >= 0) and
an attribute (the embedded world): items without them give no rows (one log line says so). With
few training people many forget values never occur among them (``coverage``): ``best_acc`` is then
bounded by ``coverage``, the same for every model on one benchmark, so compare models, not
absolute figures. The probe is retrained at every call (no cache: the runner keeps training the
same model object in place between checkpoints, so neither ``id(model)`` nor the item list can
key one), and the training people's states are read again for every split scored.

Memory: only the answer-position vector per item per layer is kept (float32, [layers, items, d]
for the training and the scored items), never a full sequence; extraction holds one batch.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from dataclasses import dataclass, field

from ..errors import UnlearnbenchError
from ..registry import register_probe
from .lens import DEFAULT_FORM, best_layer_rows, check_form, continuation, items_of

log = logging.getLogger(__name__)


def has_fact(item) -> bool:
    return getattr(item, "entity_id", -1) >= 0 and bool(getattr(item, "attribute", ""))


def majority_value(values: list[str]) -> str:
    counts = Counter(values)
    return min(counts, key=lambda v: (-counts[v], v))


@dataclass(frozen=True)
class LinearConfig:
    form: str = field(
        default=DEFAULT_FORM, metadata={"help": "probe form whose items are read (generative forms only)"}
    )
    batch_size: int = field(default=32, metadata={"help": "items per forward pass"})
    max_length: int = field(default=512, metadata={"help": "tokens per prompt+answer (longer are cut)"})
    c: float = field(default=1.0, metadata={"help": "inverse L2 strength of the logistic regression (sklearn's C)"})
    max_iter: int = field(default=1000, metadata={"help": "lbfgs iterations per probe"})
    folds: int = field(default=5, metadata={"help": "grouped folds over people when the retain split is scored"})
    seed: int = field(default=0, metadata={"help": "random_state of the logistic regressions"})

    def __post_init__(self):
        check_form(self.form)
        if self.batch_size < 1 or self.max_length < 2 or self.max_iter < 1:
            raise ValueError("batch_size and max_iter must be positive, max_length at least 2")
        if not self.c > 0:
            raise ValueError("c must be positive")
        if self.folds < 2:
            raise ValueError("folds must be at least 2")


@register_probe()
class LinearProbe:
    """Per-layer logistic-regression probes of attribute values, trained on the people the models keep."""

    name = "linear"
    version = "1"
    Config = LinearConfig
    description = "per-layer logistic-regression probe of attribute values (trained on kept people, held out by person)"

    def __init__(self, config: LinearConfig | None = None):
        self.config = config or LinearConfig()
        self._train: list | None = None  # the training people's items
        self._floors: dict[str, tuple[float, float]] = {}  # split -> (majority, coverage)
        self._warned = False

    # -- items and folds (labels only, no model) -------------------------------------------------
    def _say_once(self, message: str) -> None:
        if not self._warned:
            log.warning(message)
            self._warned = True

    def items(self, benchmark, split: str):
        form = self.config.form
        every = items_of(benchmark, split, form, self.name)
        items = [it for it in every if has_fact(it)]
        if every and not items:
            self._say_once(f"linear: the {form} items name no person and attribute; the linear probe stores no rows")
            return []
        if self._train is None:
            if "retain" not in getattr(benchmark, "splits", ()):
                self._say_once("linear: the benchmark has no retain split to train on; no linear rows are stored")
                return []
            pool = getattr(benchmark, "training_items", None)
            train = pool(form) if pool is not None else items_of(benchmark, "retain", form, self.name)
            self._train = [it for it in train if has_fact(it)]
        if not items:
            return []
        folds = self._folds(items)
        if not folds:
            self._say_once(f"linear: fewer than 2 people to train and test on in the {split} split; no rows for it")
            return []
        hits_majority, hits_cover = [], []
        for tr, te in folds:
            values: dict[str, list[str]] = {}
            for i in tr:
                values.setdefault(self._train[i].attribute, []).append(self._train[i].answer)
            for j in te:
                seen = values.get(items[j].attribute, [])
                hits_majority.append(float(bool(seen) and majority_value(seen) == items[j].answer))
                hits_cover.append(float(items[j].answer in seen))
        self._floors[split] = (sum(hits_majority) / len(items), sum(hits_cover) / len(items))
        return items

    def _is_train(self, items) -> bool:
        return [it.item_id for it in items] == [it.item_id for it in self._train or []]

    def _folds(self, items) -> list[tuple[list[int], list[int]]]:
        """(training indices into the retain items, scored indices into ``items``) per fold. The
        retain split itself: grouped folds over people; any other: one fold, minus any person who
        is also scored."""
        train = self._train or []
        if self._is_train(items):
            from sklearn.model_selection import GroupKFold

            groups = [it.entity_id for it in train]
            k = min(self.config.folds, len(set(groups)))
            if k < 2:
                return []
            return [(list(tr), list(te)) for tr, te in GroupKFold(n_splits=k).split(train, groups=groups)]
        scored = {it.entity_id for it in items}
        tr = [i for i, it in enumerate(train) if it.entity_id not in scored]
        return [(tr, list(range(len(items))))] if tr else []

    # -- scoring ---------------------------------------------------------------------------------
    def _states(self, model, tokenizer, items):
        """float32 numpy [layers, items, d] of the answer-position vectors."""
        from ..hidden import last_prompt_states

        cfg = self.config
        pairs = [(it.prompt, continuation(it)) for it in items]
        out = None
        for idx, st in last_prompt_states(model, tokenizer, pairs, cfg.batch_size, max_length=cfg.max_length):
            arr = st.cpu().numpy()
            if out is None:
                import numpy as np

                out = np.zeros((arr.shape[0], len(items), arr.shape[2]), dtype=np.float32)
            out[:, idx] = arr
        return out

    def score(self, model, tokenizer, items) -> list[dict[str, float]]:
        import numpy as np

        try:
            from sklearn.exceptions import ConvergenceWarning
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler
        except ImportError:
            raise UnlearnbenchError("probe linear needs scikit-learn: pip install scikit-learn") from None

        cfg = self.config
        train = self._train or []
        folds = self._folds(items)
        if not folds:
            return [{} for _ in items]
        x_test = self._states(model, tokenizer, items)
        x_train = x_test if self._is_train(items) else self._states(model, tokenizer, train)
        n_layers = x_test.shape[0]
        hit = np.zeros((n_layers, len(items)))
        unconverged = 0
        for tr, te in folds:
            for attr in sorted({items[j].attribute for j in te}):
                tr_a = [i for i in tr if train[i].attribute == attr]
                te_a = [j for j in te if items[j].attribute == attr]
                y = [train[i].answer for i in tr_a]
                truth = np.array([items[j].answer for j in te_a], dtype=object)
                if not y:
                    continue  # no training value: every item of this attribute counts as wrong
                for layer in range(n_layers):
                    if len(set(y)) == 1:
                        pred = np.array([y[0]] * len(te_a), dtype=object)
                    else:
                        clf = make_pipeline(
                            StandardScaler(),
                            LogisticRegression(C=cfg.c, max_iter=cfg.max_iter, random_state=cfg.seed),
                        )
                        with warnings.catch_warnings(record=True) as caught:
                            warnings.simplefilter("always", ConvergenceWarning)
                            clf.fit(x_train[layer, tr_a], y)
                        unconverged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
                        pred = clf.predict(x_test[layer, te_a])
                    hit[layer, te_a] = pred == truth
        if unconverged:
            log.warning("linear: %d probes did not converge in max_iter=%d iterations", unconverged, cfg.max_iter)
        return [{f"acc@{layer}": float(hit[layer, j]) for layer in range(n_layers)} for j in range(len(items))]

    def aggregate(self, scores_by_split: dict[str, list[dict]]) -> list[tuple[str, str, float]]:
        rows = best_layer_rows(scores_by_split, "acc", "best_acc")
        for split in scores_by_split:
            if split in self._floors and any(scores_by_split[split]):
                majority, coverage = self._floors[split]
                rows += [(split, "majority", majority), (split, "coverage", coverage)]
        return rows
