"""Task-routed LoRA on `in_proj` (reference §2.2).

OmniMamba keeps one low-rank adapter per task on every Mamba-2 `in_proj`: `mmu_lora_{A,B}0` for image chat and
`t2i_lora_{A,B}0` for text-to-image. A forward names its task and only that pair is applied:

    out = x @ W.T + scaling * (x @ A.T) @ B.T        scaling = lora_alpha / r = 4.0

For inference, `merge()` stores W + scaling * B @ A per task so a decode step pays for one matmul.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TASKS = ("mmu", "t2i")


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    return task


class TaskLoRALinear(nn.Module):
    """A bias-free Linear whose `weight` is the official base key, plus one LoRA pair per task.

    Attribute names are the checkpoint's: `weight`, `mmu_lora_A0`, `mmu_lora_B0`, `t2i_lora_A0`, `t2i_lora_B0`.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, scaling: float,
                 device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.in_features, self.out_features, self.scaling = in_features, out_features, scaling
        self.dropout = 0.0  # on the LoRA input during training (official: 0.05); a float, not in the state_dict
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **kw))
        for task in TASKS:  # registration order = the official state_dict order: mmu A, mmu B, t2i A, t2i B
            setattr(self, f"{task}_lora_A0", nn.Linear(in_features, rank, bias=False, **kw))
            setattr(self, f"{task}_lora_B0", nn.Linear(rank, out_features, bias=False, **kw))
        for task in TASKS:  # merged weights: derived, never saved, moved by .to()
            self.register_buffer(f"merged_{task}", None, persistent=False)

    def lora_pair(self, task: str) -> tuple[nn.Linear, nn.Linear]:
        pair = getattr(self, f"{check_task(task)}_lora_A0"), getattr(self, f"{task}_lora_B0")
        if pair[0] is None:
            raise RuntimeError(f"this model kept only merged weights and the {task!r} task was not merged")
        return pair

    def merged_weight(self, task: str) -> Tensor | None:
        return getattr(self, f"merged_{check_task(task)}")

    def decode_weight(self, task: str) -> Tensor:
        """The merged weight the fused decode kernels multiply by (one matmul per token)."""
        merged = self.merged_weight(task)
        if merged is None:
            raise RuntimeError("decoding needs merged LoRA weights: call model.merge_lora() first")
        return merged

    def forward(self, x: Tensor, task: str | None) -> Tensor:
        if task is None:  # plain language modelling (OmniMamba.forward_text): the base weight, no adapter
            return F.linear(x, self.weight)
        merged = self.merged_weight(task)
        if merged is not None:
            self._refuse_merged_training(task)
            return F.linear(x, merged)
        lora_A, lora_B = self.lora_pair(task)
        x_lora = F.dropout(x, self.dropout, self.training) if self.dropout else x
        return F.linear(x, self.weight) + self.scaling * lora_B(lora_A(x_lora))

    def _refuse_merged_training(self, task: str) -> None:
        """A merged weight is a detached copy of W and the LoRA factors: training through it would give them
        no gradient (and leave it stale after the optimizer step)."""
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()):
            raise RuntimeError(f"in_proj holds merged {task!r} LoRA weights (inference only) while autograd records "
                               "and its weights require grad: they would get no gradient. Call "
                               "model.unmerge_lora() before training (or run under torch.no_grad()).")

    @torch.no_grad()
    def merge(self, tasks: tuple[str, ...] = TASKS, release_unmerged: bool = False) -> None:
        """Store W + scaling * B @ A for `tasks` (computed in fp32, kept in the weight's dtype).

        release_unmerged drops W and the LoRA factors afterwards (inference only: saves a third of the
        in_proj memory, 1.6 GB for the 1.3B model; the module then serves only the merged tasks)."""
        for task in tasks:
            lora_A, lora_B = self.lora_pair(task)
            delta = lora_B.weight.float() @ lora_A.weight.float()  # (out, r) @ (r, in)
            setattr(self, f"merged_{task}", (self.weight.float() + self.scaling * delta).to(self.weight.dtype))
        if release_unmerged:
            self.weight = None
            for task in TASKS:
                setattr(self, f"{task}_lora_A0", None)
                setattr(self, f"{task}_lora_B0", None)

    def unmerge(self) -> None:
        if self.weight is None:
            raise RuntimeError("this in_proj kept only its merged weights (release_unmerged); reload the model")
        for task in TASKS:
            setattr(self, f"merged_{task}", None)
