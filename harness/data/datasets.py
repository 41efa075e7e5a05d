"""torch Datasets for the four stage inputs, all built on two small classes.

- 3-class whole-image classification (pipeline A)      -> :class:`LabelledImages`
- benign-vs-malignant ROI classification (pipeline B)   -> :class:`LabelledImages` on crops
- binary lesion segmentation, lesion cases only (A)     -> :class:`MaskedImages`, masks {0,1}
- 3-class segmentation background/benign/malignant (B)  -> :class:`MaskedImages` on :func:`class_masks`
- binary mask + 3-class label, all images (C)           -> :class:`JointImages`

The pipelines (``harness.pipelines.a`` / ``b``) choose the rows and targets of each stage.

Arrays come from the decoded-image cache (uint8, already at the stage's size), so an epoch never
decodes a PNG.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sized
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from harness import MALIGNANT, NORMAL
from harness.data.transforms import to_input


class LabelledImages(Dataset):
    """(image, label) pairs from a uint8 (N, H, W) array."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, channels: int = 3,
                 transform: A.Compose | None = None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.channels, self.transform = channels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = np.asarray(self.images[i])
        if self.transform is not None:
            img = self.transform(image=img)["image"]
        return torch.from_numpy(to_input(img, self.channels)), torch.tensor(self.labels[i])


class MaskedImages(Dataset):
    """(image, class-index mask) pairs; the same augmentation is applied to both."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, channels: int = 3,
                 transform: A.Compose | None = None):
        if images.shape != masks.shape:
            raise ValueError(f"images {images.shape} and masks {masks.shape} differ in shape")
        self.images, self.masks = images, masks
        self.channels, self.transform = channels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, mask = np.asarray(self.images[i]), np.asarray(self.masks[i])
        if self.transform is not None:
            out = self.transform(image=img, mask=mask)
            img, mask = out["image"], out["mask"]
        return torch.from_numpy(to_input(img, self.channels)), torch.from_numpy(mask.astype(np.int64))


class JointImages(MaskedImages):
    """(image, (binary mask, label)) for the multi-task network of pipeline C."""

    def __init__(self, images: np.ndarray, targets: tuple[np.ndarray, np.ndarray], channels: int = 3,
                 transform: A.Compose | None = None):
        masks, labels = targets
        super().__init__(images, masks, channels, transform)
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.labels = np.asarray(labels, dtype=np.int64)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:  # type: ignore[override]
        x, mask = super().__getitem__(i)
        return x, (mask, torch.tensor(self.labels[i]))


def class_masks(masks01: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Binary lesion masks + image labels -> 3-class pixel maps: 0 background, 1 benign, 2 malignant.

    Normal images become all-background whatever their mask holds.
    """
    labels = np.asarray(labels)
    cls = np.where(labels == NORMAL, 0, np.where(labels == MALIGNANT, 2, 1)).astype(np.uint8)
    return (masks01 > 0).astype(np.uint8) * cls[:, None, None]


class SampleSeeds(Sampler[tuple[int, int]]):
    """The indices of ``sampler``, each paired with a seed for its augmentation.

    Order and seeds of an epoch are drawn together in the main process from ``generator`` (the
    sampler's, which checkpoints save and restore) when the epoch starts. An item's augmentation
    then depends on its place in the epoch only, not on which worker process draws it: the number of
    DataLoader workers, and whether they persist across epochs, change speed, never the images a model
    sees. (The DataLoader gets a generator of its own for its workers' base seed, which it draws per
    worker start-up, i.e. per epoch or once with persistent workers.)
    """

    def __init__(self, sampler: Sampler[int], generator: torch.Generator):
        if not isinstance(sampler, Sized):
            raise TypeError(f"{type(sampler).__name__} has no length; SampleSeeds needs one")
        self.sampler, self.generator = sampler, generator

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = [int(i) for i in self.sampler]
        seeds = torch.randint(0, 2**31 - 1, (len(order),), generator=self.generator).tolist()
        return iter(list(zip(order, seeds, strict=True)))


class Reseeded(Dataset):
    """``dataset`` indexed by the (index, seed) pairs of :class:`SampleSeeds`: the transform draws from
    random generators seeded with the item's seed (:func:`seed_transform`) before the item is drawn."""

    def __init__(self, dataset: LabelledImages | MaskedImages):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        if self.dataset.transform is not None:
            seed_transform(self.dataset.transform, seed)
        return self.dataset[index]


def seed_transform(transform: A.Compose, seed: int) -> None:
    """Make ``transform``'s next call a function of ``seed``: one numpy and one Python generator seeded with it,
    shared by the pipeline and every transform in it, so the transforms draw one stream in turn.

    Not albumentations' ``set_random_seed``: it gives every transform generators of its own with the *same*
    seed, so each transform's "apply?" draw is the same number - hflip and vflip (both p = 0.5) then happen
    together or not at all, and every transform with a larger p whenever one with a smaller p does (measured:
    400 items, 192 flipped both ways, 208 not at all, none one way only). It also costs ~16 generator
    constructions per item, a fifth of the loader's time; this costs two.
    """
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
