"""A training recipe run end to end: the dataset read, the fixed validation images split off,
the sample builder chosen for the object type, and the loop started (or resumed)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nuclick_core.data.cell_canvases import (
    build_canvases,
    read_cells,
    split_cells,
    validation_canvases,
)
from nuclick_core.data.datasets import read_dataset
from nuclick_core.data.labelled import LabelledImage, downscale, shift_images
from nuclick_core.errors import DatasetError
from nuclick_core.io.files import sha256_file
from nuclick_core.training.augment import Variety
from nuclick_core.training.click_patches import ClickPatchSampler
from nuclick_core.training.gland_patches import GlandPatchSampler
from nuclick_core.training.recipe import TrainRecipe
from nuclick_core.training.train import TrainConfig, init_source, train

log = logging.getLogger(__name__)


def split_images(recipe: TrainRecipe) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """Training and validation images of the recipe's dataset (validation: ``val_names``,
    never trained on); cells are blended into canvases, the validation canvases from the
    held-out cells only."""
    root = Path(recipe.data)
    names = list(recipe.val_names)
    if recipe.format == "cells":
        train_cells, val_cells = split_cells(read_cells(root), names, root)
        if not val_cells:
            raise DatasetError(f"val_names {names} select no cell of {root}")
        size = max(2 * recipe.patch_size, 256)
        n_val = max(recipe.canvases // 10, 4)
        log.info(
            "building %d training and %d validation canvases (%d px)", recipe.canvases, n_val, size
        )
        return (
            build_canvases(
                train_cells,
                recipe.canvases,
                seed=recipe.seed,
                size=size,
                n_cells=10,
                variety=recipe.canvas_variety,
            ),
            validation_canvases(val_cells, n_val, seed=recipe.seed, size=size),
        )
    items = read_dataset(root, recipe.format)
    unknown = sorted(set(names) - {it.name for it in items})
    if unknown:
        raise DatasetError(f"val_names {unknown} are not images of {root}")
    items = downscale(shift_images(items, *recipe.image_offset), recipe.downscale)
    return [it for it in items if it.name not in names], [it for it in items if it.name in names]


def samplers(
    recipe: TrainRecipe, train_items: list[LabelledImage], val_items: list[LabelledImage]
) -> tuple[ClickPatchSampler | GlandPatchSampler, ClickPatchSampler | GlandPatchSampler]:
    """The sample builders for the recipe's object type: gland patches around squiggles, or
    click patches (nuclei, cells); the validation one without augmentation."""
    variety = Variety(
        stain=recipe.stain_aug,
        quality=recipe.quality_aug,
        scale=recipe.scale_aug,
        hue=recipe.hue_aug,
        sharpen=recipe.sharpen_aug,
    )
    if recipe.object == "gland":
        return (
            GlandPatchSampler(
                train_items,
                patch_size=recipe.patch_size,
                variety=variety,
                strokes=recipe.gland_strokes,
            ),
            GlandPatchSampler(val_items, patch_size=recipe.patch_size, augment=False),
        )
    return (
        ClickPatchSampler(
            train_items,
            patch_size=recipe.patch_size,
            click_inner=recipe.click_inner,
            near_miss=recipe.near_miss,
            near_miss_px=recipe.near_miss_px,
            variety=variety,
        ),
        ClickPatchSampler(val_items, patch_size=recipe.patch_size, augment=False),
    )


def train_config(
    recipe: TrainRecipe, train_images: list[str], threads: int, device: str, command: str
) -> TrainConfig:
    """The loop's configuration for ``recipe``; ``extra`` records the rest of the recipe (what
    checkpoints and model cards say about the run)."""
    return TrainConfig(
        object_type=recipe.object,
        width=recipe.width,
        patch_size=recipe.patch_size,
        batch_size=recipe.batch_size,
        epochs=recipe.epochs,
        steps_per_epoch=recipe.steps_per_epoch,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        seed=recipe.seed,
        threads=threads,
        device=device,
        val_objects=recipe.val_objects,
        alpha_max=recipe.alpha_max,
        bce_norm=recipe.bce_norm,
        extra={
            "data": recipe.data,
            "format": recipe.format,
            "train_images": train_images,
            "val_images": list(recipe.val_names),
            "command": command,
            "click_inner": recipe.click_inner,
            "near_miss": recipe.near_miss,
            "near_miss_px": recipe.near_miss_px,
            "init": recipe.init,
            "init_sha256": sha256_file(init_source(Path(recipe.init), recipe.object))
            if recipe.init
            else None,
            "downscale": recipe.downscale,
            "image_offset": list(recipe.image_offset),
            "stain_aug": recipe.stain_aug,
            "quality_aug": recipe.quality_aug,
            "scale_aug": recipe.scale_aug,
            "hue_aug": recipe.hue_aug,
            "sharpen_aug": recipe.sharpen_aug,
            "canvas_variety": recipe.canvas_variety,
            "gland_strokes": recipe.gland_strokes,
        },
    )


def train_from_recipe(
    recipe: TrainRecipe,
    out: Path,
    *,
    threads: int = 0,
    device: str = "cpu",
    restart: bool = False,
    command: str = "",
    progress: Callable[[str], None] = log.info,
) -> Path:
    """Train the recipe into the checkpoint folder ``out``; returns the best checkpoint."""
    train_items, val_items = split_images(recipe)
    cfg = train_config(recipe, [it.name for it in train_items], threads, device, command)
    sampler, val_sampler = samplers(recipe, train_items, val_items)
    pick = np.random.default_rng(12345).permutation(len(val_sampler))[: cfg.val_objects]
    val = val_sampler.fixed_batch(np.sort(pick))
    progress(
        f"training on {len(sampler)} objects from {len(train_items)} images; validating on "
        f"{len(pick)} objects from {', '.join(recipe.val_names)}"
    )

    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
        return sampler.batch(rng.integers(len(sampler), size=n), rng)

    init = Path(recipe.init) if recipe.init else None
    return train(cfg, draw, val, out, resume=not restart, init=init, progress=progress)
