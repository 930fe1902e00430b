"""Training configuration: validated once, frozen, and stored with every result."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
    loss_weighting: str = (
        "equal"  # a registered strategy (hpo.weighting): equal, fixed, uncertainty, gradnorm
    )
    loss_weights: list[float] | None = None
    gradnorm_alpha: float = Field(1.5, ge=0)
    grad_clip: float | None = Field(None, gt=0)
    device: str = "auto"
    # bf16 autocast of the training steps, on CUDA and on the CPU (hpo.training.trainer.bf16_autocast_ok); the first
    # layer and every evaluation stay float32. Off by default: results differ from float32 ones.
    amp: bool = False
    # torch.compile the model for training steps (Inductor), with the partitioner recomputing views in the backward
    # (hpo.training.trainer._compiled). On the CPU it does not pay since the eager step runs hpo's compiled kernels,
    # which the traced step replaces with the PyTorch form (bench/compile.py; the figures are in bench/PROFILE.md).
    # Not bit for bit with eager (Inductor fuses and reorders sums), so it is off by default and stored with every
    # result; kept for CUDA workers, where it is unmeasured.
    compile: bool = False
    eval_batch_size: int = Field(16384, ge=1)
    # CPU threads of each training process; None plans them from the cores the process may use, shared among the
    # workers on the machine and lowered before each trial to what other processes leave free
    # (hpo.training.threads). A fixed count is kept as given; `--threads` on the command line wins over it.
    threads: int | None = Field(None, ge=1)
    # How sparse fields' embedding tables are updated. dense: Adam over every row every step, like every other
    # parameter (what the peers do). rows: lazy Adam (torch.optim.SparseAdam): a batch's gradient reaches only the
    # rows it read, and only those rows' moments and values move; a row no batch reads stops moving. Its cost per step
    # follows the batch, not the vocabulary (what a 10^7-row table needs); results differ from dense Adam.
    embedding_updates: Literal["dense", "rows"] = "dense"

    @field_validator("loss_weighting")
    @classmethod
    def _registered_weighting(cls, v: str) -> str:
        from hpo.weighting import weighting_names  # the registry is the one list of names

        if v not in (known := weighting_names()):
            raise ValueError(f"unknown loss_weighting {v!r}; known: {', '.join(known)}")
        return v

    @model_validator(mode="after")
    def _weights_match_strategy(self) -> TrainConfig:
        if self.loss_weighting == "fixed" and not self.loss_weights:
            raise ValueError("loss_weighting 'fixed' needs loss_weights (one per task)")
        if self.loss_weights is not None and any(w < 0 for w in self.loss_weights):
            raise ValueError(f"loss_weights must be >= 0, got {self.loss_weights}")
        from hpo.weighting import reuses_graph

        if self.compile and reuses_graph(self.loss_weighting):
            raise ValueError(
                f"loss_weighting {self.loss_weighting!r} back-propagates through the model once per task before "
                "each step, which a torch.compile'd model does not support (it fails or trains nothing): it needs "
                "compile false"
            )
        if self.embedding_updates == "rows" and (
            self.optimizer != "adam" or self.weight_decay or self.compile
        ):
            raise ValueError(
                "embedding_updates 'rows' is lazy Adam for the tables (no weight decay, no torch.compile): it needs "
                f"optimizer adam, weight_decay 0 and compile false; got optimizer {self.optimizer}, weight_decay "
                f"{self.weight_decay}, compile {str(self.compile).lower()}"
            )
        return self
