"""Training configuration: validated once, frozen, and stored with every result."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["TrainConfig"]


class TrainConfig(BaseModel):
    """Everything the trainer needs besides the model and the data.

    ``early_stopping_metric`` names ``TASK.METRIC`` on the validation split (``income.auc``, ``y1.mse``) or
    ``loss``; empty means the first task's AUC (binary) or MSE (regression). Its direction follows the metric.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    batch_size: int = Field(1024, ge=1)
    epochs: int = Field(10, ge=1)
    max_steps: int | None = Field(None, ge=1)
    patience: int | None = Field(3, ge=1)
    early_stopping_metric: str = ""
    loss_weighting: Literal["equal", "fixed", "uncertainty", "gradnorm"] = "equal"
    loss_weights: list[float] | None = None
    gradnorm_alpha: float = Field(1.5, ge=0)
    grad_clip: float | None = Field(None, gt=0)
    device: str = "auto"
    amp: bool = False
    # torch.compile the model for training steps (Inductor). It pays only for narrow models: on the 2-core CPU an
    # MMoE of 8 x 16 (the paper's size) trains 1.27-1.5x faster per census epoch, one seed or 16, after a 10-20 s
    # compile per shape, but 8 x 32 runs at 0.84x and 8 x 64 to 8 x 256 at 0.69-0.74x (bench/PROFILE.md). Not bit
    # for bit with eager (Inductor fuses and reorders sums), so it is off by default and stored with every result:
    # for long runs of one narrow shape, such as the synthetic study's hundreds of paper-size runs.
    compile: bool = False
    eval_batch_size: int = Field(16384, ge=1)

    @model_validator(mode="after")
    def _weights_match_strategy(self) -> TrainConfig:
        if self.loss_weighting == "fixed" and not self.loss_weights:
            raise ValueError("loss_weighting 'fixed' needs loss_weights (one per task)")
        if self.loss_weights is not None and any(w < 0 for w in self.loss_weights):
            raise ValueError(f"loss_weights must be >= 0, got {self.loss_weights}")
        return self
