"""The stations processor's domain: pure folds of station events (ADR 016)."""
