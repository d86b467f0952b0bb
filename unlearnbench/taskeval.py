"""Task accuracy (FA in the ILU tables): how well a model does the fine-tuning task's test split."""

from __future__ import annotations

from .data.synthetic import TaskData
from .metrics import final_number
from .scoring import greedy_generate, score_choices


def _same_number(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and float(a) == float(b)


def task_item_scores(model, tokenizer, task: TaskData, limit: int | None = None,
                     batch_size: int = 64) -> list[tuple[str, float]]:
    """(item id, correct) for each test example."""
    test = task.test[:limit] if limit else task.test
    prompts = [ex.prompt for ex in test]
    if task.scoring == "number":
        gens = greedy_generate(model, tokenizer, prompts, max_new_tokens=getattr(task, "max_new_tokens", 32),
                               batch_size=batch_size)
        return [(f"{task.name}/{i}", float(_same_number(final_number(g), final_number(ex.target))))
                for i, (g, ex) in enumerate(zip(gens, test))]
    if task.scoring == "choice":
        scores = score_choices(model, tokenizer, prompts, [task.choices] * len(test), batch_size)
        out = []
        for i, (s, ex) in enumerate(zip(scores, test)):
            label = task.choices.index(ex.target.strip())
            out.append((f"{task.name}/{i}", float(max(range(len(s)), key=s.__getitem__) == label)))
        return out
    raise ValueError(f"unknown scoring {task.scoring!r} for task {task.name}")
