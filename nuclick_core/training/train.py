"""Training: the paper's loss, a plain loop with validation, resumable checkpoints.

Checkpoints hold model, optimiser, scheduler, epoch, best score and config, so an interrupted
run resumes where it stopped (``resume=True``). The best checkpoint (validation Dice) is kept
beside the last one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nuclick_core.errors import ModelError
from nuclick_core.inference.models import resolve_model
from nuclick_core.io.files import atomic_path, write_text_atomic
from nuclick_core.training.from_onnx import net_from_onnx, onnx_file
from nuclick_core.training.network import NuClick
from nuclick_core.training.recipe import recipe_defaults
from nuclick_core.training.widen import widen

log = logging.getLogger(__name__)


def nuclick_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    others: torch.Tensor,
    *,
    alpha_max: float | None = None,
    bce_norm: str = "pixels",
) -> torch.Tensor:
    """Soft Dice plus weighted BCE, the paper's equation 1.

    W = alpha^2 G + alpha G~ + 1 with alpha = max(sum G~ / sum G, 1) per sample, where G is the
    target object and G~ the other objects in the patch. Per sample, the weighted BCE is
    ``sum(W * BCE) / n`` over its n pixels (equation 1, as both public implementations), so
    alpha's emphasis on the clicked object is kept; both terms are averaged over the batch.

    Parameters
    ----------
    logits, target, others : float tensors (N, 1, H, W).
    bce_norm : ``"pixels"`` (equation 1) or ``"weights"``: ``sum(W * BCE) / sum(W)``, which
        cancels alpha's overall emphasis (sum W / n runs from about 2 to over 10); what the
        shipped models up to nuclei-light-2, cells-light and glands-light-2 were trained with.
    alpha_max : cap on alpha (None: the paper's uncapped alpha). alpha grows as the target
        shrinks against its neighbours, so uncapped it weighs a small nucleus's pixels up to
        hundreds of times more than the background around it, which teaches the network to
        draw small nuclei too large and large ones too small; ``alpha_max=1`` gives every
        sample the same weights (G and G~ twice the background).
    """
    dims = (1, 2, 3)
    g_sum = target.sum(dims).clamp_min(1.0)
    alpha = torch.clamp(others.sum(dims) / g_sum, min=1.0)
    if alpha_max is not None:
        alpha = alpha.clamp_max(max(alpha_max, 1.0))
    alpha = alpha.view(-1, 1, 1, 1)
    weight = alpha**2 * target + alpha * others + 1.0
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="none")
    if bce_norm == "pixels":
        bce = bce.mean(dims)
    elif bce_norm == "weights":
        bce = bce.sum(dims) / weight.sum(dims)
    else:
        raise ValueError(f"bce_norm must be 'pixels' or 'weights', got {bce_norm!r}")
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dims)
    dice = 1.0 - (2.0 * inter + 1.0) / (prob.sum(dims) + target.sum(dims) + 1.0)
    return (bce + dice).mean()


_RECIPE = recipe_defaults()


@dataclass
class TrainConfig:
    """Everything that decides a training run; stored in checkpoints and the model card.

    The defaults are :class:`~nuclick_core.training.recipe.TrainRecipe`'s (one place); ``extra``
    records the rest of the recipe (data, images, click sampling).
    """

    object_type: str = _RECIPE["object"]
    width: float = _RECIPE["width"]
    patch_size: int = _RECIPE["patch_size"]
    batch_size: int = _RECIPE["batch_size"]
    epochs: int = _RECIPE["epochs"]
    steps_per_epoch: int = _RECIPE["steps_per_epoch"]
    lr: float = _RECIPE["lr"]
    weight_decay: float = _RECIPE["weight_decay"]
    seed: int = _RECIPE["seed"]
    threads: int = 0
    device: str = "cpu"
    val_objects: int = _RECIPE["val_objects"]
    alpha_max: float | None = _RECIPE["alpha_max"]
    bce_norm: str = _RECIPE["bce_norm"]
    extra: dict = field(default_factory=dict)


def _save_atomic(obj: object, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def evaluate_dice(
    net: torch.nn.Module, val: tuple[np.ndarray, ...], device: str, batch: int = 32
) -> float:
    """Mean per-object Dice of the thresholded (0.5) prediction on fixed validation patches."""
    net.eval()
    x_all, y_all, _ = val
    scores = []
    with torch.inference_mode():
        for k in range(0, len(x_all), batch):
            x = torch.from_numpy(x_all[k : k + batch]).to(device)
            pred = (torch.sigmoid(net(x)) > 0.5).cpu().numpy()
            y = y_all[k : k + batch] > 0.5
            inter = (pred & y).sum((1, 2, 3))
            scores.extend(2 * inter / np.maximum(pred.sum((1, 2, 3)) + y.sum((1, 2, 3)), 1))
    net.train()
    return float(np.mean(scores))


def init_source(init: Path, object_type: str) -> Path:
    """``init`` as a file to read: a checkpoint, a ``model.onnx``, or a model folder or name."""
    if init.is_file():
        return init
    if onnx_file(init).is_file():
        return onnx_file(init)
    return onnx_file(resolve_model(str(init), object_type))


def initial_net(cfg: TrainConfig, init: Path | None, progress: Callable[[str], None]) -> NuClick:
    """A fresh network, or ``init``'s weights: a training checkpoint, or a shipped model (its
    ``model.onnx``, its folder or its name under models/; batch norms frozen, see
    ``from_onnx``). A network of half the width is widened."""
    if init is None:
        return NuClick(width=cfg.width).to(cfg.device)
    source = init_source(init, cfg.object_type)
    if source.suffix == ".onnx":
        net = net_from_onnx(source)
    else:
        state = torch.load(source, map_location="cpu", weights_only=False)
        net = NuClick(width=state.get("config", {}).get("width", cfg.width))
        net.load_state_dict(state["model"])
        if state.get("frozen_batch_norm"):
            net.freeze_batch_norm()
    width = net.width
    if width not in (cfg.width, cfg.width / 2):
        raise ModelError(
            f"{source}: network width {width} cannot start a width-{cfg.width} network; "
            f"use --width {width} or {2 * width} (a network can only be widened twofold)"
        )
    if width == cfg.width:
        progress(f"initialised from {source}")
    else:
        frozen = net.frozen_batch_norm
        net = widen(net, seed=cfg.seed)
        if frozen:
            net.freeze_batch_norm()
        progress(f"initialised from {source}, widened from width {width} to {cfg.width}")
    return net.to(cfg.device)


def train(
    cfg: TrainConfig,
    draw_batch: Callable[[np.random.Generator, int], tuple[np.ndarray, ...]],
    val: tuple[np.ndarray, ...],
    out_dir: Path,
    *,
    resume: bool = True,
    init: Path | None = None,
    progress: Callable[[str], None] = print,
) -> Path:
    """Train NuClick; returns the path of the best checkpoint.

    Parameters
    ----------
    cfg : the run's configuration.
    draw_batch : ``draw_batch(rng, n)`` returns (x, target, others) float32 arrays.
    val : fixed validation arrays (x, target, others).
    out_dir : checkpoint folder (``last.pt``, ``best.pt``, ``history.json``).
    resume : continue from ``out_dir/last.pt`` when it exists.
    init : start from this checkpoint's weights (fine-tuning: new optimiser and schedule).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    net = initial_net(cfg, init, progress)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * cfg.steps_per_epoch)
    start_epoch, best, history = 0, -1.0, []
    last = out_dir / "last.pt"
    if resume and last.exists():
        state = torch.load(last, map_location=cfg.device, weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        progress(f"resumed from {last} at epoch {start_epoch}")
    total = cfg.epochs * cfg.steps_per_epoch
    t_start = time.time()
    done_here = 0
    for epoch in range(start_epoch, cfg.epochs):
        rng = np.random.default_rng([cfg.seed, epoch])
        net.train()
        losses = []
        for step in range(cfg.steps_per_epoch):
            x, y, o = (torch.from_numpy(a).to(cfg.device) for a in draw_batch(rng, cfg.batch_size))
            opt.zero_grad(set_to_none=True)
            loss = nuclick_loss(net(x), y, o, alpha_max=cfg.alpha_max, bce_norm=cfg.bce_norm)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            done_here += 1
            if step % 50 == 0 or step == cfg.steps_per_epoch - 1:
                rate = done_here * cfg.batch_size / (time.time() - t_start)
                remaining = total - (epoch * cfg.steps_per_epoch + step + 1)
                eta = remaining * cfg.batch_size / max(rate, 1e-9)
                progress(
                    f"epoch {epoch + 1}/{cfg.epochs} step {step + 1}/{cfg.steps_per_epoch} "
                    f"loss {np.mean(losses[-50:]):.4f} {rate:.1f} patches/s ETA {eta / 60:.1f} min"
                )
        dice = evaluate_dice(net, val, cfg.device)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_dice": dice})
        progress(f"epoch {epoch + 1}: train loss {np.mean(losses):.4f} val Dice {dice:.4f}")
        state = {
            "model": net.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch,
            "best": max(best, dice),
            "history": history,
            "config": asdict(cfg),
            "frozen_batch_norm": net.frozen_batch_norm,
        }
        if dice > best:
            best = dice
            _save_atomic(state, out_dir / "best.pt")
        _save_atomic(state, last)
        write_text_atomic(out_dir / "history.json", json.dumps(history, indent=1))
    return out_dir / "best.pt"
