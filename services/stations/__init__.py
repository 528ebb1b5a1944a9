"""The stations processor: station operations (ADR 016)."""
