"""Synthetic breast-ultrasound dataset: the project's embedded default data (paper format).

No real data can be downloaded where the harness is developed, so every command can fall back to
a set written by :func:`synthesize`. It is a small B-mode simulation rather than drawn blobs, so
that pipelines, augmentations and metrics meet the problems of real images:

* echogenicity, specular and attenuation maps of layered anatomy (gel, skin, subcutaneous fat
  with lobules and Cooper's ligaments, heterogeneous fibroglandular tissue with ducts and fat
  islands, retromammary fat, pectoral muscle, sometimes a rib and its shadow);
* a lesion whose margin, orientation, interior and attenuation depend on its kind (cyst,
  fibroadenoma, irregular benign; spiculated, microlobulated, circumscribed malignant), with
  class-conditional distributions that overlap, so no single global cue separates the classes;
* fully developed speckle: complex Gaussian scatterers convolved with an anisotropic,
  depth-dependent point-spread function, Rayleigh envelope, imperfect time-gain compensation,
  noise floor, spatial compounding, log compression to 8 bits and a partial automatic gain
  (so the mean grey level is no class cue: a lesion's darkness is partly normalised away).

:class:`Acquisition` changes the simulated scanner settings (gain, speckle size, imaging depth, dynamic
range, lesion size, and how much they vary per patient), so that a model can be tested on a set acquired
differently from the one it was trained on; its defaults are the generator's own.

A patient has 1-3 images of the same anatomy and lesion seen with a small probe shift/rotation
and a new speckle realisation; the mask is the lesion's core, smoothed like a human outline.
"""

from __future__ import annotations

import io
import logging
import math
import numbers
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from harness import CLASS_NAMES
from harness.data.output import require_free_space, staged_output
from harness.errors import DataError

logger = logging.getLogger(__name__)

METADATA_FILE = "training_metadata.xlsx"
COLUMNS = ("image_id", "image_path", "mask_path", "label", "label_name", "patient_id")
PAPER_PROPORTIONS = (679 / 1503, 364 / 1503, 460 / 1503)
_PREFIX = ("b", "m", "n")
_OWN_FILE = re.compile(r"[bmn]_[0-9]+(_mask)?\.png")  # fullmatch: "$" would also match "b_1.png\n"
_CREATOR = b"harness.data.synth"  # marks our workbook: only such a directory may be overwritten
_MIN_RENDER = 192  # smaller outputs are rendered at this size and area-downsampled (multi-look)
_F32 = np.float32


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`synthesize` wrote and how fast."""

    out: Path
    counts: dict[str, int]  # label name -> number of images
    n_patients: int
    seconds: float
    images_per_s: float

    @property
    def n_images(self) -> int:
        return sum(self.counts.values())


# ---------------------------------------------------------------------------------------------
# Acquisition settings


@dataclass(frozen=True)
class Acquisition:
    """Scanner settings of a simulated acquisition; the defaults are the generator's own (same seed, same files).

    Change them to make a set that a model trained on the default one has not seen: brighter or darker
    images (``gain_db``), coarser or finer speckle (``speckle_scale``, the PSF's width), a deeper or shallower
    field of view so that anatomy and lesions appear smaller or larger (``depth_scale``), more or less
    log-compression contrast (``dynamic_range_db``, the per-image range drawn from), larger or smaller
    lesions (``lesion_scale``). ``variation`` in [0, 1] widens the per-patient randomisation of all five
    (0: none, the default); its draws come from their own random stream, so the anatomy of each patient is
    the same as with ``variation=0``.
    """

    gain_db: float = 0.0  # overall gain after the automatic one: +6 dB brightens by ~6/DR of the grey range
    speckle_scale: float = 1.0  # PSF width (speckle grain and compounding blur), x default
    depth_scale: float = 1.0  # imaging depth (and width) x default: 1.5 shows anatomy 1/1.5 as large
    dynamic_range_db: tuple[float, float] = (45.0, 60.0)  # range each image's log-compression range is drawn from
    lesion_scale: float = 1.0  # lesion linear size x default (area x its square)
    variation: float = 0.0  # per-patient spread of the settings above (0 = fixed settings)

    RANGES: ClassVar[dict[str, tuple[float, float, str]]] = {
        "gain_db": (-30.0, 30.0, "dB"), "speckle_scale": (0.5, 3.0, ""), "depth_scale": (0.5, 2.5, ""),
        "lesion_scale": (0.4, 2.5, ""), "variation": (0.0, 1.0, "")}

    def problems(self) -> list[str]:
        """One line per invalid setting (empty when all are valid)."""
        out = []
        for name, (lo, hi, unit) in self.RANGES.items():
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not lo <= float(value) <= hi:
                out.append(f"acquisition.{name} must be a number in [{lo:g}, {hi:g}]{' ' + unit if unit else ''}, "
                           f"but got {name}={value!r}.")
        dr = self.dynamic_range_db
        if (not isinstance(dr, tuple | list) or len(dr) != 2
                or any(not isinstance(x, numbers.Real) or isinstance(x, bool) for x in dr)
                or not 20 <= float(dr[0]) <= float(dr[1]) <= 100):
            out.append(f"acquisition.dynamic_range_db must be (low, high) dB with 20 <= low <= high <= 100, "
                       f"but got dynamic_range_db={dr!r}.")
        return out

    def varied(self, rng: np.random.Generator) -> Acquisition:
        """This acquisition with each setting moved at random by up to ``variation`` x its spread (one patient)."""
        v = float(self.variation)
        g, sp, dp, dr, ls = rng.uniform(-1, 1, 5) * v

        def clamp(name: str, x: float) -> float:
            lo, hi, _ = self.RANGES[name]
            return float(min(hi, max(lo, x)))

        low, high = (float(x) + 10 * dr for x in self.dynamic_range_db)
        return Acquisition(
            gain_db=clamp("gain_db", self.gain_db + 6 * g),
            speckle_scale=clamp("speckle_scale", self.speckle_scale * math.exp(0.35 * sp)),
            depth_scale=clamp("depth_scale", self.depth_scale * math.exp(0.3 * dp)),
            dynamic_range_db=(min(100.0, max(20.0, low)), min(100.0, max(20.0, high))),
            lesion_scale=clamp("lesion_scale", self.lesion_scale * math.exp(0.25 * ls)), variation=0.0)

    def render_size(self, size: int) -> int:
        """Side of the rendered canvas: a deeper view is rendered larger, so its speckle is not sub-pixel."""
        base = max(int(size), _MIN_RENDER)
        return base if self.depth_scale <= 1 else int(round(base * float(self.depth_scale)))


DEFAULT_ACQUISITION = Acquisition()


# ---------------------------------------------------------------------------------------------
# Plan: class counts and patients


def class_counts(n_images: int, proportions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Round ``n_images * proportions`` (largest remainder) so that the counts sum to ``n_images``."""
    p = np.asarray(proportions, dtype=float) / float(sum(proportions))
    raw = n_images * p
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n_images - counts.sum()]:
        counts[i] += 1
    return int(counts[0]), int(counts[1]), int(counts[2])


def _plan_patients(rng: np.random.Generator, counts: tuple[int, ...], per: tuple[int, int]) -> list[tuple[int, int]]:
    """(label, number of images) per patient, shuffled so that patient ids do not reveal the class."""
    plan = []
    for label, n in enumerate(counts):
        while n > 0:
            k = min(n, int(rng.integers(per[0], per[1] + 1)))
            plan.append((label, k))
            n -= k
    order = rng.permutation(len(plan))
    return [plan[i] for i in order]


# ---------------------------------------------------------------------------------------------
# Small random-field helpers (all float32, sizes in pixels)


def _field(rng: np.random.Generator, h: int, w: int, cell_y: float, cell_x: float) -> np.ndarray:
    """Smooth zero-mean, unit-std random field with correlation lengths ~cell (bicubic upsampled noise)."""
    gh, gw = int(h / cell_y) + 4, int(w / cell_x) + 4
    big = cv2.resize(rng.standard_normal((gh, gw)).astype(_F32), (int(gw * cell_x), int(gh * cell_y)),
                     interpolation=cv2.INTER_CUBIC)
    f = big[int(cell_y) : int(cell_y) + h, int(cell_x) : int(cell_x) + w]
    return (f - f.mean()) / (f.std() + 1e-6)


def _curve(rng: np.random.Generator, w: int, base: float, amp: float, period: float) -> np.ndarray:
    """A smooth depth profile over the lateral axis (sum of three random sinusoids)."""
    x = np.arange(w, dtype=_F32)
    out = np.full(w, base, _F32)
    for _ in range(3):
        out += amp / 3 * np.sin(2 * np.pi * x / (period * rng.uniform(0.5, 1.5)) + rng.uniform(0, 2 * np.pi))
    return out


def _ellipse(img: np.ndarray, c: tuple[float, float], ax: tuple[float, float], ang: float, val: float,
             thick: int = -1, arc: tuple[float, float] = (0, 360)) -> None:
    """Anti-aliased, sub-pixel ellipse (filled when thick=-1) drawn in place."""
    cv2.ellipse(img, (round(c[0] * 16), round(c[1] * 16)), (max(1, round(ax[0] * 16)), max(1, round(ax[1] * 16))),
                ang, arc[0], arc[1], float(val), thick, cv2.LINE_AA, 4)


# ---------------------------------------------------------------------------------------------
# Point-spread function


@dataclass(frozen=True)
class _Psf:
    """Separable Gaussian point-spread function, longer laterally than axially."""

    ky: np.ndarray  # axial kernel (short)
    kx_focus: np.ndarray  # lateral kernel in the focal zone
    kx_far: np.ndarray  # lateral kernel far from focus (wider beam)
    line_unit: float  # specular amplitude that makes a line peak at speckle rms 1
    grain: float  # speckle length scale in render px per 256 (sets the compounding blur too)


def _gauss(sigma: float) -> np.ndarray:
    """1-D Gaussian kernel with unit L2 norm, so that filtering white noise preserves its power."""
    r = max(1, math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return (k / np.sqrt((k**2).sum())).astype(_F32)


def _make_psf(length: float) -> _Psf:
    """The PSF for ``length`` render px per default image depth (times the speckle scale)."""
    s = length / 256
    ky, kf, kd = _gauss(0.8 * s), _gauss(1.8 * s), _gauss(3.0 * s)  # lateral cell ~2-4x the axial one
    return _Psf(ky, kf, kd, float(1.0 / (kf.sum() * ky.max())), length)


# ---------------------------------------------------------------------------------------------
# Lesions


@dataclass(frozen=True)
class _Lesion:
    """One lesion's shape and appearance (lengths in render pixels, angles in radians)."""

    kind: str
    cx: float
    cy: float
    a: float  # lateral semi-axis
    b: float  # axial semi-axis
    theta: float
    r_core: np.ndarray  # radius (units of the ellipse) on a 512-angle table: margin outline
    spicules: np.ndarray  # (n, 3): angle, length (ellipse units), thickness (px)
    edge: float  # margin blur (px): sharp for circumscribed, ill-defined for malignant
    echo: float  # mean echogenicity relative to glandular tissue
    hetero: float  # interior heterogeneity (log-std)
    texture: np.ndarray  # 48x48 field sampled in lesion coordinates
    posterior: float  # >1 enhancement, <1 shadowing
    halo: float  # echogenic halo strength (0 = none)
    halo_width: float  # in units of the radius
    capsule: float  # specular wall (top/bottom)
    edge_shadow: float  # lateral refraction shadows
    calcs: np.ndarray  # (n, 2) microcalcifications in ellipse units


_ANGLES = np.linspace(-np.pi, np.pi, 512, endpoint=False)
_R = tuple[float, float]  # a (low, high) range sampled uniformly (log-uniformly for echo)


@dataclass(frozen=True)
class _Kind:
    """Appearance distribution of one lesion kind; ranges overlap on purpose between classes."""

    area: float  # median lesion area as a fraction of the image (log-normal)
    aspect: _R  # width / height
    tilt_deg: float  # sd of the long axis against the skin line
    rough_beta: _R  # margin spectrum slope: high = smooth lobes, low = angular / microlobulated
    rough_sd: _R  # sd of the radius (units of the ellipse)
    spicules: tuple[int, int]  # how many thin radiating lines
    spicule_len: _R
    edge: _R  # margin blur in px at 256: sharp (circumscribed) .. ill-defined
    echo: _R  # interior echogenicity relative to glandular tissue
    hetero: _R  # interior log-std
    posterior: _R  # >1 enhancement, <1 shadowing
    halo_p: float = 0.0  # probability of an echogenic halo
    capsule: _R = (0.0, 0.15)  # specular top/bottom wall
    edge_shadow: _R = (0.0, 0.2)  # lateral refraction shadows
    calc_p: float = 0.0  # probability of microcalcifications


_KINDS = {
    "cyst": _Kind(0.05, (1.1, 2.0), 8, (2.5, 3.2), (0.01, 0.03), (0, 0), (0, 0), (0.5, 0.9), (0.0002, 0.002),
                  (0.0, 0.15), (1.4, 2.2), capsule=(0.6, 1.1), edge_shadow=(0.2, 0.6)),
    "fibroadenoma": _Kind(0.07, (1.25, 2.3), 10, (2.0, 2.8), (0.03, 0.08), (0, 0), (0, 0), (0.7, 1.4),
                          (0.02, 0.12), (0.1, 0.35), (0.95, 1.5), capsule=(0.2, 0.7), edge_shadow=(0.2, 0.8),
                          calc_p=0.08),
    "benign_irregular": _Kind(0.07, (0.9, 1.8), 16, (1.4, 2.2), (0.05, 0.11), (0, 3), (0.1, 0.3), (1.0, 2.5),
                              (0.015, 0.1), (0.2, 0.55), (0.6, 1.2), halo_p=0.1, capsule=(0.0, 0.3),
                              edge_shadow=(0.0, 0.3), calc_p=0.1),
    "spiculated": _Kind(0.09, (0.6, 1.2), 22, (1.2, 1.8), (0.07, 0.14), (8, 22), (0.3, 0.9), (2.0, 4.0),
                        (0.005, 0.05), (0.35, 0.8), (0.15, 0.6), halo_p=0.5, calc_p=0.35),
    "microlobulated": _Kind(0.1, (0.7, 1.4), 20, (0.6, 1.1), (0.05, 0.1), (0, 4), (0.1, 0.3), (1.5, 3.0),
                            (0.006, 0.06), (0.3, 0.7), (0.25, 1.0), halo_p=0.3, calc_p=0.3),
    "circumscribed": _Kind(0.09, (1.0, 1.8), 12, (1.8, 2.6), (0.02, 0.06), (0, 0), (0, 0), (1.0, 2.0),
                           (0.008, 0.08), (0.25, 0.6), (0.9, 1.6), capsule=(0.2, 0.45), edge_shadow=(0.0, 0.4),
                           calc_p=0.1),
}
_KIND_P = {0: (("cyst", 0.3), ("fibroadenoma", 0.5), ("benign_irregular", 0.2)),
           1: (("spiculated", 0.4), ("microlobulated", 0.35), ("circumscribed", 0.25))}


def _margin(rng: np.random.Generator, beta: float, sd: float) -> np.ndarray:
    """Radius on the angle table: 1 + a random Fourier series with power-law amplitudes."""
    k = np.arange(2, 25)
    coef = k ** -beta * rng.standard_normal(k.size)
    wave = (coef[:, None] * np.cos(k[:, None] * _ANGLES + rng.uniform(0, 2 * np.pi, k.size)[:, None])).sum(0)
    return np.clip(1 + wave * (sd / (wave.std() + 1e-9)), 0.45, None).astype(_F32)


def _sample_lesion(rng: np.random.Generator, label: int, render: int, top: float, margin: int, u: float,
                   lesion_scale: float) -> _Lesion:
    """A lesion of class ``label`` placed below ``top`` (canvas px) and inside the un-shifted view; ``u`` is the
    default image depth in render px (physical scale), ``lesion_scale`` multiplies its linear size."""
    names, probs = [n for n, _ in _KIND_P[label]], [p for _, p in _KIND_P[label]]
    kind = str(rng.choice(names, p=probs))
    kd = _KINDS[kind]
    area = float(np.clip(kd.area * math.exp(rng.normal(0, 0.75)), 0.015, 0.32)) * u**2 * lesion_scale**2
    aspect = rng.uniform(*kd.aspect)
    a, b = math.sqrt(area / math.pi * aspect), math.sqrt(area / math.pi / aspect)
    room = 0.93 * render - top  # the lesion must fit between skin and image bottom
    if 2.4 * b > room:
        a, b = a * room / (2.4 * b), room / 2.4
    n_spic = int(rng.integers(kd.spicules[0], kd.spicules[1] + 1))
    spicules = np.stack([rng.uniform(-np.pi, np.pi, n_spic), rng.uniform(*kd.spicule_len, n_spic),
                         rng.uniform(1.5, 3.0, n_spic) * u / 256], 1)
    half_w = a * 1.3 + 2
    cx = margin + rng.uniform(min(half_w, render / 2), max(render - half_w, render / 2))
    cy = float(np.clip(rng.uniform(0.28, 0.6) * u, top + 1.15 * b, max(top + 1.15 * b, 0.93 * render - 1.15 * b)))
    n_calc = int(rng.integers(3, 13)) if rng.random() < kd.calc_p else 0
    ang, rad = rng.uniform(-np.pi, np.pi, n_calc), 0.75 * np.sqrt(rng.random(n_calc))
    neutral = label == 1 and rng.random() < 0.15  # some cancers show no posterior feature
    return _Lesion(
        kind=kind, cx=cx, cy=cy, a=a, b=b, theta=math.radians(rng.normal(0, kd.tilt_deg)),
        r_core=_margin(rng, rng.uniform(*kd.rough_beta), rng.uniform(*kd.rough_sd)),
        spicules=spicules, edge=rng.uniform(*kd.edge) * u / 256,
        echo=math.exp(rng.uniform(math.log(kd.echo[0]), math.log(kd.echo[1]))),
        hetero=rng.uniform(*kd.hetero) if not (kind == "cyst" and rng.random() < 0.2) else 0.6,  # debris
        texture=_field(rng, 48, 48, 6, 6), posterior=rng.uniform(0.9, 1.3) if neutral else rng.uniform(*kd.posterior),
        halo=rng.uniform(1.5, 3.5) if rng.random() < kd.halo_p else 0.0, halo_width=rng.uniform(0.15, 0.35),
        capsule=rng.uniform(*kd.capsule), edge_shadow=rng.uniform(*kd.edge_shadow),
        calcs=np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1))


def _paint_lesion(les: _Lesion, cx: float, cy: float, theta: float, scale: float, psf: _Psf,
                  rng: np.random.Generator, E: np.ndarray, S: np.ndarray, A: np.ndarray, mask: np.ndarray) -> None:
    """Draw the lesion, seen at (cx, cy, theta, scale), into a view's maps and its soft core mask."""
    h, w = E.shape
    a, b = les.a * scale, les.b * scale
    c, s = math.cos(theta), math.sin(theta)

    def to_view(p: float, q: float) -> tuple[float, float]:  # ellipse units -> view pixels
        return cx + a * p * c - b * q * s, cy + a * p * s + b * q * c

    ext = max(a, b) * (float(les.r_core.max()) + float(les.spicules[:, 1].max(initial=0)) + les.halo_width + 0.2) + 4
    y0, y1 = max(0, int(cy - ext)), min(h, int(cy + ext) + 1)
    x0, x1 = max(0, int(cx - ext)), min(w, int(cx + ext) + 1)
    if y0 >= y1 or x0 >= x1:
        return
    box = (slice(y0, y1), slice(x0, x1))
    yy, xx = np.mgrid[box].astype(_F32)
    dx, dy = xx - cx, yy - cy
    u, v = (dx * c + dy * s) / a, (-dx * s + dy * c) / b
    rho, dist = np.hypot(u, v) + _F32(1e-6), np.hypot(dx, dy)
    rc = np.interp(np.arctan2(v, u), _ANGLES, les.r_core, period=2 * np.pi).astype(_F32)
    d_core = dist * (1 - rc / rho)  # ~signed distance to the margin in px along the ray
    member = np.clip(0.5 - d_core / les.edge, 0, 1)
    if len(les.spicules):  # thin tapering lines radiating from the margin
        spk = np.zeros_like(member)
        for ang, length, thick in les.spicules:
            r0 = float(np.interp(ang, _ANGLES, les.r_core, period=2 * np.pi)) - 0.1
            pts = [to_view(r * math.cos(ang), r * math.sin(ang)) for r in (r0, r0 + length / 2, r0 + length)]
            px = [(round((x - x0) * 16), round((y - y0) * 16)) for x, y in pts]  # 4 fractional bits
            cv2.line(spk, px[0], px[1], 1.0, max(1, round(thick * 1.6)), cv2.LINE_AA, 4)
            cv2.line(spk, px[1], px[2], 1.0, max(1, round(thick * 0.8)), cv2.LINE_AA, 4)
        member = np.maximum(member, cv2.GaussianBlur(spk, (0, 0), 0.5 * les.edge))
    n = les.texture.shape[0]
    tex = cv2.remap(les.texture, ((u / 1.6 + 1) * (n - 1) / 2).astype(_F32), ((v / 1.6 + 1) * (n - 1) / 2).astype(_F32),
                    cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    echo = les.echo * np.exp(les.hetero * tex - les.hetero**2 / 2)
    hw = les.halo_width * math.sqrt(a * b)
    halo = les.halo * np.exp(-(((d_core - 0.45 * hw) / (0.5 * hw)) ** 2)) * np.exp(0.3 * tex)
    sin2 = (dy / (dist + 1e-3)) ** 2  # 1 where the margin faces the beam (top, bottom), 0 at the sides
    band = np.exp(-((d_core / max(1.0, les.edge)) ** 2))
    E[box] = E[box] * (1 - member) * (1 + halo) + echo * member
    S[box] = S[box] * (1 - member) + les.capsule * psf.line_unit * band * sin2**2
    A[box] += member * (-math.log(les.posterior) / (2 * b)) + les.edge_shadow * 0.12 * band * (1 - sin2) ** 4
    mask[box] = np.clip(0.5 - d_core / 0.8, 0, 1)
    point_unit = 1.0 / (psf.kx_focus.max() * psf.ky.max())
    for p, q in les.calcs:
        x, y = to_view(p, q)
        if 0 <= x < w and 0 <= y < h:
            S[int(y), int(x)] += rng.uniform(1.0, 2.5) * point_unit


# ---------------------------------------------------------------------------------------------
# Patient scene (anatomy on a canvas wider than the view, so a probe shift shows new tissue)


@dataclass(frozen=True)
class _Scene:
    """One patient: anatomy maps on a wide canvas, the lesion and the scanner settings."""

    label: int
    tissue: np.ndarray  # (H, W, 3): echogenicity, specular amplitude, attenuation per px
    margin: int
    skin_y: float
    skin_th: float
    skin_echo: float
    lesion: _Lesion | None
    unit: float  # render px per default image depth: > render when zoomed in, < render for a deeper view
    gain_db: float
    dyn_range: float
    tgc_comp: float
    tgc_bumps: np.ndarray  # residual TGC in dB at 5 depths
    auto_gain: float  # how far the scanner's automatic gain pulls the mean grey towards its preset
    preset_grey: float
    focus: float  # focal depth (fraction)
    user_gain_db: float = 0.0  # Acquisition.gain_db, applied after the automatic gain


@dataclass(frozen=True)
class _Layers:
    """Depth (px) of each tissue boundary for every canvas column."""

    top: float  # below the skin
    fat_end: np.ndarray
    gland_end: np.ndarray
    muscle_top: np.ndarray  # beyond the image when no muscle is in view

    def depth_in(self, x: float, lo: str, hi: str) -> tuple[float, float]:
        col = int(x) % self.fat_end.size
        return float(getattr(self, lo)[col] if lo != "top" else self.top), float(getattr(self, hi)[col])


def _fat(rng: np.random.Generator, lay: _Layers, H: int, W: int, s: float, S: np.ndarray, psf: _Psf,
         u: float) -> np.ndarray:
    """Hypoechoic subcutaneous fat: lobules outlined by echogenic septa (Cooper's ligaments)."""
    lob = np.ones((H, W), _F32)
    for _ in range(int(rng.integers(4, 10))):
        cx = rng.uniform(0, W)
        top, end = lay.depth_in(cx, "top", "fat_end")
        cy = top + rng.uniform(0.2, 1.1) * (end - top)
        ax, ang = (rng.uniform(0.06, 0.17) * u, rng.uniform(0.025, 0.06) * u), rng.uniform(-20, 20)
        _ellipse(lob, (cx, cy), ax, ang, rng.uniform(0.5, 1.6))
        start = rng.uniform(0, 360)
        _ellipse(S, (cx, cy), ax, ang, rng.uniform(0.4, 1.0) * psf.line_unit, 1, (start, start + rng.uniform(90, 300)))
    return lob * np.exp(0.25 * _field(rng, H, W, 6 * s, 10 * s))


def _gland(rng: np.random.Generator, lay: _Layers, H: int, W: int, s: float, S: np.ndarray, psf: _Psf,
           fat_rel: float, label: int, lesion: _Lesion | None, u: float) -> np.ndarray:
    """Hyperechoic, heterogeneous fibroglandular tissue with fat islands, ducts and lesion-like
    distractors (kept off the lesion so that its outline stays what the mask says)."""
    isl: np.ndarray = np.ones((H, W), _F32)
    n_islands, n_ducts = int(rng.integers(3, 12)), int(rng.poisson(0.8))
    n_pseudo = int(rng.random() < (0.6 if label == 2 else 0.25)) + int(rng.random() < (0.3 if label == 2 else 0.1))
    for i in range(n_islands + n_ducts + n_pseudo):
        if i < n_islands:  # small fat islands
            ax, val, wall = (rng.uniform(0.02, 0.07) * u, rng.uniform(0.012, 0.035) * u), fat_rel, 0.0
        elif i < n_islands + n_ducts:  # ducts: long, thin, anechoic lumen, bright walls
            ax, val, wall = (rng.uniform(0.1, 0.25) * u, rng.uniform(0.008, 0.02) * u), rng.uniform(0.01, 0.06), 0.8
        else:  # prominent fat lobule or ectatic duct segment
            r, asp = math.sqrt(rng.uniform(0.01, 0.06) / math.pi) * u, rng.uniform(1.2, 2.6)
            ax, val, wall = (r * math.sqrt(asp), r / math.sqrt(asp)), rng.uniform(0.02, 0.15), rng.uniform(0, 0.6)
        for _ in range(10):
            cx = rng.uniform(0, W)
            cy = rng.uniform(*lay.depth_in(cx, "fat_end", "gland_end"))
            if lesion is None or ((cx - lesion.cx) / (1.7 * lesion.a + ax[0])) ** 2 + (
                    (cy - lesion.cy) / (1.7 * lesion.b + ax[0])) ** 2 > 1:
                break
        else:
            continue
        ang = rng.uniform(-25, 25)
        _ellipse(isl, (cx, cy), ax, ang, val)
        if wall:
            _ellipse(S, (cx, cy), ax, ang, wall * psf.line_unit, 1)
    isl = cv2.GaussianBlur(isl, (0, 0), 1.2 * s)
    return isl * np.exp(0.6 * _field(rng, H, W, 6 * s, 24 * s) + 0.35 * _field(rng, H, W, 3 * s, 6 * s) - 0.24)


def _muscle(rng: np.random.Generator, H: int, W: int, s: float, u: float) -> np.ndarray:
    """Pectoral muscle: hypoechoic with oblique echogenic striations."""
    beta = math.radians(rng.uniform(-25, 25))
    y, x = np.arange(H, dtype=_F32)[:, None], np.arange(W, dtype=_F32)
    phase = (y * math.cos(beta) + x * math.sin(beta)) / (rng.uniform(0.02, 0.04) * u)
    stri = np.maximum(0, np.cos(2 * np.pi * phase + 1.5 * _field(rng, H, W, 8 * s, 20 * s))) ** 3
    return rng.uniform(0.08, 0.25) * (0.6 + 1.6 * stri)


def _add_rib(rng: np.random.Generator, lay: _Layers, H: int, W: int, s: float, E, S, A, psf: _Psf,
             u: float) -> None:
    """A rib below the muscle: bright curved cortex and a dense acoustic shadow."""
    c = (rng.uniform(0.2, 0.8) * W, float(lay.muscle_top.mean()) + rng.uniform(0.09, 0.14) * u)
    ax = (rng.uniform(0.12, 0.22) * u, rng.uniform(0.045, 0.07) * u)
    rib = np.zeros((H, W), _F32)
    _ellipse(rib, c, ax, rng.uniform(-8, 8), 1.0)
    E *= 1 - rib
    E += 0.5 * rib
    A += rib * (0.5 / s)
    _ellipse(S, c, ax, 0, rng.uniform(1.5, 2.5) * psf.line_unit, max(1, round(1.5 * s)), (185, 355))


def _sample_scene(rng: np.random.Generator, label: int, render: int, psf: _Psf, acq: Acquisition) -> _Scene:
    """One patient's anatomy, lesion and scanner settings. Lengths of anatomy are in ``u`` (render px per
    default image depth), extents of the canvas in render px: a deeper view shows the same tissue smaller."""
    u = render / acq.depth_scale
    s, H, m = u / 256, render, int(0.08 * max(render, u))
    W = render + 2 * m
    skin_y, skin_th = rng.uniform(0.01, 0.035) * u, rng.uniform(0.015, 0.028) * u
    top = skin_y + skin_th
    fat_end = _curve(rng, W, top + rng.uniform(0.06, 0.3) * u, rng.uniform(0.01, 0.05) * u, 0.8 * W * u / render)
    gland_end = fat_end + _curve(rng, W, rng.uniform(0.3, 0.6) * u, rng.uniform(0.02, 0.08) * u, 0.6 * W * u / render)
    has_muscle = rng.random() < 0.85
    muscle_top = gland_end + rng.uniform(0.02, 0.08) * u if has_muscle else np.full(W, 2.0 * H, _F32)
    lay = _Layers(top, fat_end, gland_end, muscle_top)
    lesion = _sample_lesion(rng, label, render, top + 0.02 * u, m, u, acq.lesion_scale) if label != 2 else None
    y = np.arange(H, dtype=_F32)[:, None]
    wobble = _field(rng, H, W, 10 * s, 18 * s) * (0.02 * u)
    in_fat = y < fat_end + wobble
    in_gland = ~in_fat & (y < gland_end + wobble)
    in_muscle = y >= muscle_top + 0.3 * wobble
    S = np.zeros((H, W), _F32)
    fat_lvl, gland_lvl = rng.uniform(0.03, 0.1), rng.uniform(0.7, 1.4)
    fat = fat_lvl * _fat(rng, lay, H, W, s, S, psf, u)
    gland = gland_lvl * _gland(rng, lay, H, W, s, S, psf, fat_lvl / gland_lvl, label, lesion, u)
    E = np.where(in_fat, fat, np.where(in_gland, gland, np.where(in_muscle, _muscle(rng, H, W, s, u), fat)))
    A = np.where(in_fat, 0.8, np.where(in_gland, 1.2, 1.0)).astype(_F32) * (rng.uniform(1.5, 3.0) / u)
    if has_muscle and muscle_top.min() < H:
        S[np.clip(muscle_top.astype(int), 0, H - 1), np.arange(W)] += rng.uniform(0.6, 1.2) * psf.line_unit
        if rng.random() < 0.12 and muscle_top.mean() < 0.78 * H:
            _add_rib(rng, lay, H, W, s, E, S, A, psf, u)
    return _Scene(
        label=label, tissue=np.dstack([E, S, A]).astype(_F32), margin=m, skin_y=skin_y, skin_th=skin_th,
        skin_echo=rng.uniform(1.2, 2.5), lesion=lesion, unit=u, gain_db=rng.normal(0, 3.5),
        dyn_range=rng.uniform(*acq.dynamic_range_db), tgc_comp=rng.uniform(0.75, 1.15),
        tgc_bumps=rng.normal(0, 1.8, 5).astype(_F32), auto_gain=rng.uniform(0.5, 0.95),
        preset_grey=rng.normal(102, 16), focus=rng.uniform(0.35, 0.6), user_gain_db=acq.gain_db)


# ---------------------------------------------------------------------------------------------
# One view (image + mask) of a patient scene


def _view_maps(scene: _Scene, rng: np.random.Generator, psf: _Psf, render: int, first: bool):
    """Echogenicity, specular, attenuation maps and soft lesion mask seen through one probe pose."""
    H = W = render
    u = scene.unit
    shift = 0.0 if first else rng.uniform(-0.06, 0.06) * u
    angle = 0.0 if first else rng.uniform(-4, 4)
    M = cv2.getRotationMatrix2D((W / 2, scene.skin_y), angle, 1.0)
    M[:, 2] -= M[:, :2] @ np.array([scene.margin + shift, 0.0])
    view = cv2.warpAffine(scene.tissue, M, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    E, S, A = (np.ascontiguousarray(view[..., i]) for i in range(3))
    top = scene.skin_y + rng.normal(0, 0.003 * u)  # gel standoff and skin, flat against the probe
    r0, r1 = int(top), int(top + scene.skin_th)
    E[:r0], E[r0:r1], S[r0:r1] = 0.002, scene.skin_echo, 0.0
    S[r0] += 1.5 * psf.line_unit
    S[r1] += 0.8 * psf.line_unit
    expected = np.median(A, axis=1)  # the attenuation a TGC curve is set for (ignores rib, lesion)
    mask = np.zeros((H, W), _F32)
    les = scene.lesion
    if les is not None:
        cx, cy = M @ np.array([les.cx, les.cy, 1.0])
        if not first:  # the same lesion, a slightly different cross-section
            cy += rng.normal(0, 0.01 * u)
        theta = les.theta - math.radians(angle) + (0.0 if first else rng.normal(0, 0.04))
        scale = 1.0 if first else rng.uniform(0.95, 1.05)
        _paint_lesion(les, cx, cy, theta, scale, psf, rng, E, S, A, mask)
    return E, S, A, expected, mask


def _acquire(scene: _Scene, rng: np.random.Generator, psf: _Psf, E, S, A, expected) -> np.ndarray:
    """B-mode image (float grey) of the maps: attenuation, TGC, speckle, compounding, log compression."""
    H, W = E.shape
    depth = np.arange(H, dtype=_F32) / H
    gain = np.exp(-np.cumsum(A, axis=0))
    gain = cv2.GaussianBlur(gain, (0, 0), sigmaX=3.0 * scene.unit / 256, sigmaY=0.1)  # beam width blurs shadow edges
    resid_db = np.interp(depth, np.linspace(0, 1, 5), scene.tgc_bumps)
    gain *= (np.exp(scene.tgc_comp * np.cumsum(expected)) * 10 ** (resid_db / 20))[:, None]
    z = rng.standard_normal((H, W, 2), dtype=_F32) * np.sqrt(E / 2)[..., None]  # complex scatterers
    z[..., 0] += S  # coherent specular reflectors
    near = cv2.sepFilter2D(z, -1, psf.kx_focus, psf.ky, borderType=cv2.BORDER_REFLECT)
    far = cv2.sepFilter2D(z, -1, psf.kx_far, psf.ky, borderType=cv2.BORDER_REFLECT)
    wf = np.clip(np.abs(depth - scene.focus) / 0.4, 0, 1)[:, None, None].astype(_F32)
    rf = (near * (1 - wf) + far * wf) * gain[..., None]
    lo_db = scene.gain_db + 20 - scene.dyn_range  # 0 dB = glandular tissue: ~20 dB under white
    power = rf[..., 0] ** 2 + rf[..., 1] ** 2 + _F32(10 ** ((lo_db + 4) / 10))  # + electronic noise
    g = psf.grain  # spatial compounding, over a few speckle cells
    power = cv2.GaussianBlur(power, (0, 0), sigmaX=0.9 * g / 256, sigmaY=0.6 * g / 256)
    grey = (10 * np.log10(power) - lo_db) * (255 / scene.dyn_range)
    grey = grey + scene.auto_gain * (scene.preset_grey - float(np.clip(grey, 0, 255).mean()))
    if scene.user_gain_db:  # the operator's overall gain, after the automatic one: it moves the mean grey
        grey += scene.user_gain_db * (255 / scene.dyn_range)
    return grey


def _render_view(scene: _Scene, rng: np.random.Generator, psf: _Psf, render: int, size: int,
                 first: bool) -> tuple[np.ndarray, np.ndarray]:
    """One image and its 0/255 mask; the first view of a patient is the un-shifted one."""
    E, S, A, expected, mask_soft = _view_maps(scene, rng, psf, render, first)
    grey = _acquire(scene, rng, psf, E, S, A, expected)
    mask_soft = cv2.GaussianBlur(mask_soft, (0, 0), 1.5 * scene.unit / 256)  # an annotator's smooth outline
    if size != render:  # area downsampling averages several speckle cells, like a resized scan
        grey = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
        mask_soft = cv2.resize(mask_soft, (size, size), interpolation=cv2.INTER_AREA)
    image = np.clip(grey + 0.5, 0, 255).astype(np.uint8)
    mask = mask_soft > 0.5
    if scene.lesion is not None and not mask.any():  # a lesion too small for this resolution: keep its peak
        mask = mask_soft >= mask_soft.max() * 0.5
    return image, mask.astype(np.uint8) * 255


# ---------------------------------------------------------------------------------------------
# I/O and the public entry point


def _check_args(out: Path, n_images: int, size: int, seed: int, proportions, images_per_patient,
                acquisition: Acquisition) -> None:
    """Every problem with the arguments and the output directory, in one DataError."""
    problems = []
    if isinstance(acquisition, Acquisition):
        problems.extend(acquisition.problems())
    else:
        problems.append(f"acquisition must be an Acquisition, but got {type(acquisition).__name__}.")
    if not isinstance(n_images, int | np.integer) or n_images < 1:
        problems.append(f"n_images must be an integer >= 1, but got n_images={n_images!r}.")
    if not isinstance(size, int | np.integer) or not 32 <= size <= 2048:
        problems.append(f"size must be an integer in [32, 2048] pixels, but got size={size!r}.")
    if not isinstance(seed, int | np.integer) or seed < 0:
        problems.append(f"seed must be an integer >= 0, but got seed={seed!r}.")
    p = tuple(proportions) if isinstance(proportions, tuple | list) else (proportions,)
    if len(p) != 3 or any(not isinstance(x, numbers.Real) or not float(x) >= 0 for x in p) or not 0 < sum(p) < math.inf:
        problems.append(
            f"proportions must be 3 numbers >= 0 (Benign, Malignant, Normal) with a positive sum, "
            f"but got proportions={p!r}.")
    ipp = tuple(images_per_patient) if isinstance(images_per_patient, tuple | list) else (images_per_patient,)
    if len(ipp) != 2 or any(not isinstance(x, int | np.integer) for x in ipp) or not 1 <= ipp[0] <= ipp[1]:
        problems.append(f"images_per_patient must be (min, max) with 1 <= min <= max, but got {ipp!r}.")
    try:
        listed = out.is_dir() and any(out.iterdir())
    except OSError as e:
        problems.append(f"{out}: cannot list it ({e.strerror}); choose a directory you can write to.")
        listed = False
    if out.exists() and not out.is_dir():
        problems.append(f"{out}: exists and is not a directory; choose another output path.")
    elif listed and not (out / METADATA_FILE).is_file():
        problems.append(
            f"{out}: directory is not empty and has no {METADATA_FILE}, so it is not a synthetic dataset; "
            f"refusing to write into it. Choose a new or empty directory (or delete it if an interrupted "
            f"run left it).")
    elif (out / METADATA_FILE).is_file() and not _is_synthetic(out / METADATA_FILE):
        problems.append(
            f"{out / METADATA_FILE}: was not written by the synthetic generator (a real dataset?); refusing "
            f"to overwrite it. Choose a new or empty directory.")
    if problems:
        raise DataError(problems)


def _is_synthetic(path: Path) -> bool:
    """Whether a metadata workbook carries the generator's creator mark (see _write_metadata)."""
    try:
        with zipfile.ZipFile(path) as z:
            return _CREATOR in z.read("docProps/core.xml")
    except (OSError, KeyError, zipfile.BadZipFile):
        return False


def _clear_previous(out: Path) -> None:
    """Remove the files a previous synthesize() wrote (and nothing else)."""
    for sub in ("images", "masks"):
        if (out / sub).is_dir():
            for f in (out / sub).iterdir():
                if _OWN_FILE.fullmatch(f.name) and f.is_file():
                    f.unlink()
    for stale in ("splits", ".cache"):
        if (out / stale).exists():
            logger.warning("%s: left in place from the previous dataset; delete it if it is stale.", out / stale)


def _png(path: Path, array: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:  # pragma: no cover - cv2 encodes any 2-D uint8 array
        raise DataError(f"{path}: could not encode the image as PNG.")
    path.write_bytes(buf.tobytes())  # into the staging directory: the whole set appears at the end or not at all


def _write_metadata(path: Path, rows: list[dict]) -> None:
    """Write the workbook with fixed zip timestamps and document dates: same data, same bytes."""
    import pandas as pd  # lazily: importing the module stays cheap for the CLI

    buf = io.BytesIO()
    pd.DataFrame(rows, columns=list(COLUMNS)).to_excel(buf, index=False, engine="openpyxl")
    fixed = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(fixed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(created|modified)[^>]*>)[^<]*", rb"\g<1>2000-01-01T00:00:00Z", data)
                data = re.sub(rb"<dc:creator>[^<]*</dc:creator>", b"<dc:creator>" + _CREATOR + b"</dc:creator>", data)
            dst.writestr(zipfile.ZipInfo(info.filename, (1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
    path.write_bytes(fixed.getvalue())


def synth_bytes(n_images: int, size: int) -> int:
    """Upper estimate of a synthetic dataset's size on disk: speckle barely compresses (fast PNG level 1)."""
    return int(n_images) * (int(size) ** 2 + 2048) + 1024 * 1024


def _render_all(stage: Path, plan: list[tuple[int, int]], n_images: int, size: int, seed: int,
                progress: bool, acq: Acquisition) -> list[dict]:
    """Render every patient's views into ``stage``/images and ``stage``/masks; the metadata rows, sorted by id."""
    (stage / "images").mkdir()
    (stage / "masks").mkdir()
    psfs: dict[float, _Psf] = {}
    digits = max(4, len(str(n_images)))
    next_id, rows = [0, 0, 0], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_images, desc="synth", unit="img")
    for pid, (label, k) in enumerate(plan):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(pid,)))
        if acq.variation:  # its own stream: the anatomy draws stay those of variation 0
            patient_acq = acq.varied(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(pid, 1))))
        else:
            patient_acq = acq
        render = patient_acq.render_size(size)
        length = render / patient_acq.depth_scale * patient_acq.speckle_scale
        psf = psfs.setdefault(length, _make_psf(length))
        scene = _sample_scene(rng, label, render, psf, patient_acq)
        for view in range(k):
            image, mask = _render_view(scene, rng, psf, render, size, first=view == 0)
            next_id[label] += 1
            image_id = f"{_PREFIX[label]}_{next_id[label]:0{digits}d}"
            _png(stage / "images" / f"{image_id}.png", image)
            _png(stage / "masks" / f"{image_id}_mask.png", mask)
            rows.append({"image_id": image_id, "image_path": f"images/{image_id}.png",
                         "mask_path": f"masks/{image_id}_mask.png", "label": label,
                         "label_name": CLASS_NAMES[label], "patient_id": f"P{pid + 1:0{digits}d}"})
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    rows.sort(key=lambda r: str(r["image_id"]))
    return rows


def synthesize(
    out: Path,
    n_images: int = 300,
    size: int = 256,
    seed: int = 0,
    proportions: tuple[float, float, float] = PAPER_PROPORTIONS,
    images_per_patient: tuple[int, int] = (1, 3),
    progress: bool = False,
    acquisition: Acquisition = DEFAULT_ACQUISITION,
) -> SynthSummary:
    """Write a paper-format synthetic breast-ultrasound dataset into ``out``.

    Layout: ``images/<id>.png`` (8-bit gray), ``masks/<id>_mask.png`` (0/255, empty for Normal)
    and ``training_metadata.xlsx`` (image_id, image_path, mask_path, label, label_name,
    patient_id). Class counts follow ``proportions`` (normalised; default: the paper's
    679/364/460), each patient has ``images_per_patient`` images of one lesion. The same seed
    gives identical files. ``acquisition`` changes the simulated scanner settings (:class:`Acquisition`;
    its defaults write the same files as before it existed). ``out`` may be new, empty or a previous
    synthetic dataset (its images and masks are replaced); any other non-empty directory is refused.
    """
    out = Path(out)
    _check_args(out, n_images, size, seed, proportions, images_per_patient, acquisition)
    require_free_space(out, synth_bytes(int(n_images), int(size)),
                       f"a synthetic dataset of {n_images} images at {size} px",
                       "free space there, write to another disk, or ask for fewer or smaller images")
    t0 = time.perf_counter()
    benign, malignant, normal = (float(p) for p in proportions)
    counts = class_counts(int(n_images), (benign, malignant, normal))
    plan = _plan_patients(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1 << 30,))),
                          counts, (int(images_per_patient[0]), int(images_per_patient[1])))
    with staged_output(out, last=(METADATA_FILE,)) as stage:
        rows = _render_all(stage, plan, int(n_images), int(size), seed, progress, acquisition)
        _write_metadata(stage / METADATA_FILE, rows)
        if (out / METADATA_FILE).is_file():  # a previous synthetic set: its own files go just before ours come in
            _clear_previous(out)
    seconds = time.perf_counter() - t0
    summary = SynthSummary(out=out, counts=dict(zip(CLASS_NAMES, counts, strict=True)), n_patients=len(plan),
                           seconds=seconds, images_per_s=n_images / max(seconds, 1e-9))
    logger.info("synth: wrote %d images (%s) of %d patients to %s in %.1f s (%.0f images/s).", n_images,
                ", ".join(f"{v} {k}" for k, v in summary.counts.items()), len(plan), out, seconds,
                summary.images_per_s)
    return summary
