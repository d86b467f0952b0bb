"""Benchmark plugins: where forget/retain data, probe items, models and oracles come from."""
