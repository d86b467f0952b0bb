"""Task plugins: datasets that fine-tuning attacks train on and ILU uses as environments."""
