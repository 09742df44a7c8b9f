"""The bundled trainer: `gen train` (QLoRA or LoRA with trl's SFTTrainer + peft, before/after evaluation) and
`gen merge`. Importing this package is cheap; torch, transformers and trl load when a function runs."""

from __future__ import annotations

from .config import TrainConfig, train_config


def train(cfg: TrainConfig, data, out, overwrite: bool = False, quiet: bool = False, merge: bool = False,
          push_to_hub: str | None = None, private: bool = False) -> dict:
    """Train (or resume, or skip when complete) a LoRA adapter on `data` into `out`; returns metrics.json.
    See `instructgen.trainer.loop.train`."""
    from .loop import train as _train
    return _train(cfg, data, out, overwrite=overwrite, quiet=quiet, merge=merge, push_to_hub=push_to_hub,
                  private=private)


__all__ = ["TrainConfig", "train_config", "train"]  # merging: instructgen.trainer.merge.merge_adapter
