"""Attack plugins: what an unlearned model is stress-tested with (relearning fine-tunes, ...)."""
