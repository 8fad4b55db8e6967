"""Models: safe serialization (skops), the registry, gates and model cards."""
