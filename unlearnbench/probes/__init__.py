"""Probe plugins: the forms of asking a fact (one module per family of forms)."""
