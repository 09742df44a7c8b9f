"""instructgen: seed tasks to a curated instruction-tuning dataset and a tuned student model."""

__version__ = "0.1.0"
