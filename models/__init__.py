"""Fraud models: one tiny protocol for every scorer, online (river) and batch (scikit-learn)."""
