"""`dsp`: Dense Supervision Propagation (Wei et al., TCSVT 2024, arXiv 2107.11267) on a MinkUNet.

At one encoder level (tensor stride `method.dsp.stride`) with features F_i [N_i, C] of scene i:

CSFR (cross-sample feature reallocation), for the scene pairs (2k, 2k + 1) of a batch, with
one bilinear affinity A_c = F_i W_c F_j^T [N_i, N_j] read in both directions:
    F_{j->i} = softmax_row(A_c) F_j,      F_{i->j} = softmax_row(A_c^T) F_i
ISFR (intra-sample feature redistribution), for every scene, A_s = F_i W_s F_i^T:
    F_self = softmax_row(A_s^T) F_i

A branch replaces scene i's features at that level by the reallocated ones (they live on
scene i's coordinates) and runs the shared U-Net decoder with scene i's own skips. With
p = softmax of the plain logits and p' of the branch's, on the original points:

    L_CR = mean_points ||p - p'||^2                       (CSFR branch: consistency only)
    L_SR = mean_points ||p - p'||^2,  L_seg_s = CE(p', y)  (ISFR branch)
    loss = CE(p, y) + csfr_weight L_CR + isfr_weight L_SR + isfr_ce_weight L_seg_s
                + propagated_weight CE(p, y~)

as in the paper (arXiv 2107.11267, Sec. III): the cross-sample branch gets no labels of its
own; CE(p, y) on scene i's labelled points moves p, and L_CR pulls p' (built from scene j's
features through A_c) towards it, so the gradient reaches the features of unlabelled points
of scene j. `consistency: kl` swaps ||p - p'||^2 for KL(p || p'). CE over labelled points only.
The last term is not the paper's: with `propagated_weight` > 0 the engine adds the propagated
labels y~ of `method.propagation` (`pseudo_label`, as for method `propagation`) and the plain
branch also learns from them; the branches' terms stay on the weak labels y (0: off, the paper).
The modules are used in training only; `predict` runs the plain network.

Schedule (`method.dsp.schedule`): `staged` = CSFR for `stage1_epochs` epochs, then ISFR
fine-tuning; `joint` = both every step; `csfr` / `isfr` = one alone.

Memory: A has N_i x N_j entries. `reallocate` computes it in row chunks (softmax is per row,
so a chunk's rows are exact) sized to `chunk_mb`, and wraps each chunk in activation
checkpointing, so backward recomputes the chunk instead of keeping every A block alive:
peak extra memory is about one chunk, whatever N_i x N_j.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from pcseg.methods.base import Method, MethodContext
from pcseg.sparse import SparseTensor, quantize
from pcseg.weak.losses import masked_ce

SCHEDULES = ("staged", "joint", "csfr", "isfr")
STRIDES = (1, 2, 4, 8, 16)


def affinity(query: torch.Tensor, key: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """float [N_q, N_k] = softmax_row(query W key^T); query [N_q, C], key [N_k, C], W [C, C]. Dense: small inputs."""
    return torch.softmax((query @ weight) @ key.t(), dim=1)


def chunk_rows(num_keys: int, budget_bytes: float, element_size: int = 4) -> int:
    """Rows per affinity chunk: a chunk holds ~3 [rows, num_keys] buffers (logits, softmax, grad)."""
    return max(1, int(budget_bytes // (3 * max(num_keys, 1) * element_size)))


def _reallocate_rows(query: torch.Tensor, key: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return affinity(query, key, weight) @ key


def reallocate(query: torch.Tensor, key: torch.Tensor, weight: torch.Tensor, budget_bytes: float) -> torch.Tensor:
    """float [N_q, C] = softmax_row(query W key^T) key, row chunk by row chunk (exact).

    Under autograd each chunk is checkpointed: its [rows, N_k] affinity is recomputed in
    backward, never stored, so memory stays ~ `budget_bytes` for any N_q x N_k.
    """
    rows = chunk_rows(len(key), budget_bytes, key.element_size())
    needs_grad = torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or weight.requires_grad)
    parts = []
    for start in range(0, len(query), rows):
        q = query[start:start + rows]
        if needs_grad:
            parts.append(checkpoint(_reallocate_rows, q, key, weight, use_reentrant=False))
        else:
            parts.append(_reallocate_rows(q, key, weight))
    return torch.cat(parts) if parts else query.new_zeros(query.shape)


def encoder_channels(backbone: nn.Module, stride: int) -> int:
    """Channels of a MinkUNet's encoder output at `stride` (the width of W_c / W_s)."""
    if stride == 1:
        return int(backbone.INIT_DIM)
    return int(backbone.PLANES[STRIDES.index(stride) - 1] * backbone.BLOCK.expansion)


CONSISTENCIES = ("mse", "kl")


def consistency(logits: torch.Tensor, branch_logits: torch.Tensor, mask: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Mean over rows where `mask` of ||p - p'||^2 (`mse`, the paper's form) or KL(p || p') (`kl`),
    p = softmax(logits), p' = softmax(branch_logits); both sides stay in the graph. 0 if no row."""
    if not bool(mask.any()):
        return branch_logits.sum() * 0.0
    log_p = torch.log_softmax(logits[mask].float(), 1)
    log_q = torch.log_softmax(branch_logits[mask].float(), 1)
    if kind == "kl":
        return F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
    return (log_p.exp() - log_q.exp()).pow(2).sum(1).mean()


class DSP(Method):
    """model: a Segmentor whose backbone has `encode` / `decode` (MinkUNet)."""

    # the trainer should batch scene pairs with PairSampler (positions 2k, 2k + 1 share a labelled class)
    needs_pairs = True

    def __init__(self, model: nn.Module, stride: int = 16, schedule: str = "staged", stage1_epochs: int = 5,
                 csfr_weight: float = 1.0, isfr_weight: float = 1.0, isfr_ce_weight: float = 1.0,
                 consistency: str = "mse", chunk_mb: float = 256.0, class_weights: Optional[torch.Tensor] = None,
                 propagated_weight: float = 0.0):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"config key 'method.dsp.schedule': unknown schedule {schedule!r}; "
                             f"valid: {', '.join(SCHEDULES)}")
        if stride not in STRIDES:
            raise ValueError(f"config key 'method.dsp.stride': {stride} is not an encoder stride; "
                             f"valid: {', '.join(map(str, STRIDES))}")
        if consistency not in CONSISTENCIES:
            raise ValueError(f"config key 'method.dsp.consistency': unknown form {consistency!r}; "
                             f"valid: {', '.join(CONSISTENCIES)}")
        self.model = model
        self.consistency = consistency
        self.stride, self.schedule, self.stage1_epochs = stride, schedule, stage1_epochs
        self.csfr_weight, self.isfr_weight, self.isfr_ce_weight = csfr_weight, isfr_weight, isfr_ce_weight
        self.budget_bytes = chunk_mb * 2 ** 20
        self.propagated_weight = propagated_weight
        # the engine then adds `pseudo_label` from `method.propagation` to the training scenes
        self.needs_propagated_labels = propagated_weight > 0
        channels = encoder_channels(model.backbone, stride)
        # scaled identity: A starts as a scaled dot-product attention, not a saturated softmax
        init = torch.eye(channels) / math.sqrt(channels)
        self.w_cross = nn.Parameter(init.clone())
        self.w_self = nn.Parameter(init.clone())
        self.register_buffer("class_weights", class_weights, persistent=class_weights is not None)
        self.on_epoch_start(0)  # sets use_csfr / use_isfr; the trainer calls it again every epoch

    def on_epoch_start(self, epoch: int) -> None:
        staged_first = epoch < self.stage1_epochs
        self.use_csfr = self.schedule in ("joint", "csfr") or (self.schedule == "staged" and staged_first)
        self.use_isfr = self.schedule in ("joint", "isfr") or (self.schedule == "staged" and not staged_first)

    def cross_features(self, level: SparseTensor, num_scenes: int) -> tuple[torch.Tensor, int]:
        """Row features F_{j->i} for the rows of paired scenes (unpaired rows keep F_i), and the
        number of scenes in pairs."""
        scene = level.coords[:, 0].long()
        out = level.feats.clone()
        paired = num_scenes - num_scenes % 2
        for a in range(0, paired, 2):
            rows_a, rows_b = torch.nonzero(scene == a).flatten(), torch.nonzero(scene == a + 1).flatten()
            fa, fb = level.feats[rows_a], level.feats[rows_b]
            # under autocast the product may come back in another precision than the features
            out[rows_a] = reallocate(fa, fb, self.w_cross, self.budget_bytes).to(out.dtype)
            # softmax_row(A_c^T) = softmax_row(F_j W_c^T F_i^T): the same affinity, read column-wise
            out[rows_b] = reallocate(fb, fa, self.w_cross.t(), self.budget_bytes).to(out.dtype)
        return out, paired

    def self_features(self, level: SparseTensor, num_scenes: int) -> torch.Tensor:
        scene = level.coords[:, 0].long()
        out = level.feats.clone()
        for a in range(num_scenes):
            rows = torch.nonzero(scene == a).flatten()
            # softmax_row(A_s^T) with A_s = F W_s F^T
            out[rows] = reallocate(level.feats[rows], level.feats[rows], self.w_self.t(), self.budget_bytes).to(out.dtype)
        return out

    def forward(self, batch: dict) -> dict:
        seg = self.model
        coords, inverse, feats, _ = quantize(batch["coord"], seg.voxel_size, batch["batch"], batch["feat"])
        encoded = seg.backbone.encode(SparseTensor(feats, coords))
        logits = seg.backbone.decode(encoded).slice(inverse)
        labels = batch["weak_label"].to(logits.device)
        ce = masked_ce(logits, labels, self.class_weights)
        loss, out = ce, {"ce": ce.detach()}
        if self.propagated_weight:
            if "pseudo_label" not in batch:
                raise KeyError("method.dsp.propagated_weight > 0 needs batches with 'pseudo_label' "
                               "(built by pcseg.engine.build)")
            propagated = masked_ce(logits, batch["pseudo_label"].to(logits.device), self.class_weights)
            loss = loss + self.propagated_weight * propagated
            out.update(propagated=propagated.detach())
        level = encoded[self.stride]
        num_scenes = len(batch["offset"])
        point_scene = batch["batch"].to(logits.device)

        def decode_branch(new_feats: torch.Tensor) -> torch.Tensor:
            return seg.backbone.decode({**encoded, self.stride: level.replace_feats(new_feats)}).slice(inverse)

        if self.use_csfr:
            cross, paired = self.cross_features(level, num_scenes)
            l_cr = consistency(logits, decode_branch(cross), point_scene < paired, self.consistency)
            loss = loss + self.csfr_weight * l_cr
            out.update(csfr_consistency=l_cr.detach())
        if self.use_isfr:
            branch_logits = decode_branch(self.self_features(level, num_scenes))
            l_sr = consistency(logits, branch_logits, torch.ones_like(labels, dtype=torch.bool), self.consistency)
            l_seg = masked_ce(branch_logits, labels, self.class_weights)
            loss = loss + self.isfr_weight * l_sr + self.isfr_ce_weight * l_seg
            out.update(isfr_consistency=l_sr.detach(), isfr_ce=l_seg.detach())
        # the idle module's weight joins the graph at zero cost, so DDP sees every parameter used
        loss = loss + 0.0 * (self.w_cross.sum() + self.w_self.sum())
        return {"loss": loss, **out, "logits": logits}


def build_dsp(ctx: MethodContext) -> DSP:
    d = ctx.cfg.method.dsp
    weights = ctx.class_weights()
    return DSP(ctx.make_model(), stride=d.stride, schedule=d.schedule, stage1_epochs=d.stage1_epochs,
               csfr_weight=d.csfr_weight, isfr_weight=d.isfr_weight, isfr_ce_weight=d.isfr_ce_weight,
               consistency=d.consistency, chunk_mb=d.chunk_mb, class_weights=weights,
               propagated_weight=d.propagated_weight)
