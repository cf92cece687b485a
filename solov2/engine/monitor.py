"""Training health: the guard against a collapsed mask branch, and gradient norms per branch.

SOLOv2's mask logits are dot products of a predicted kernel with mask features that are non-negative (the
mask branch ends in GN + ReLU), so one large step along "lower every pixel" can push every logit far below
zero. The Dice loss then sits at its maximum and, with every sigmoid saturated, gives no gradient: the branch
never recovers (``loss_ins`` pinned at its weight, 3.0). docs/history.md has the measurements.
"""
from __future__ import annotations

import torch
from torch import nn

# Parameter-name prefixes of the branches whose gradient norms go to TensorBoard (``grad_norm/<branch>``).
BRANCHES = {
    "backbone": ("backbone.",),
    "neck": ("neck.",),
    "mask_feat_head": ("mask_feat_head.",),
    "kernel_branch": ("bbox_head.kernel_convs.", "bbox_head.solo_kernel."),
    "cate_branch": ("bbox_head.cate_convs.", "bbox_head.solo_cate."),
}


def branch_grad_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of the gradients of each branch in :data:`BRANCHES` (call after backward, unscaled)."""
    model = getattr(model, "module", model)
    norms: dict[str, list[torch.Tensor]] = {name: [] for name in BRANCHES}
    for pname, p in model.named_parameters():
        if p.grad is None:
            continue
        for name, prefixes in BRANCHES.items():
            if pname.startswith(prefixes):
                norms[name].append(p.grad.detach().float().norm())
    return {name: float(torch.stack(v).norm()) for name, v in norms.items() if v}


class CollapseGuard:
    """Says once when ``loss_ins`` has stayed within ``tol`` of its maximum for ``patience`` iterations.

    Args:
        max_loss: the Dice loss weight (Dice is at most 1), i.e. ``loss_ins``'s maximum.
        hint: what to change, appended to the message.
    """

    def __init__(self, max_loss: float, patience: int = 20, tol: float = 1e-3, hint: str = ""):
        self.max_loss, self.patience, self.tol, self.hint = max_loss, patience, tol, hint
        self.run, self.warned = 0, False

    def update(self, loss_ins: float, iteration: int) -> str | None:
        """Feed one iteration's ``loss_ins``; returns the warning the first time the condition holds."""
        self.run = self.run + 1 if loss_ins >= self.max_loss - self.tol else 0
        if self.run < self.patience or self.warned:
            return None
        self.warned = True
        return (f"loss_ins has stayed at its maximum ({self.max_loss:g}, within {self.tol:g}) for {self.patience} "
                f"iterations (iterations {iteration - self.patience + 1}..{iteration}): the mask branch has "
                f"collapsed (every mask probability is ~0, so the Dice loss gives no gradient) and will not "
                f"recover; {self.hint}")
