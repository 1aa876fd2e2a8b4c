"""Pores of the deformed RVE: relative area of each initial pore (DESIGN section 3) -> pores.csv.

Pores carry no mesh in a run (they are the space between the particles), so they are found on a
raster of the RVE: the deformed triangles of a snapshot (fields/snapshot_*.npz) are drawn onto
an N x N grid; the uncovered pixels are pore. The pores of the initial state are its connected
uncovered regions (4-connectivity); at any later state each uncovered pixel belongs to the
initial pore nearest to it (so a pore that splits while it closes keeps one identity, and one
that is squeezed shut has area 0). Pixel size = RVE width / N (N = 512: 31 nm on a 16 um RVE).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_PIXELS = 512


def uncovered(tri: np.ndarray, width: float, height: float, n: int = N_PIXELS) -> np.ndarray:
    """Boolean (ny, nx) raster, True where no triangle covers the pixel centre."""
    from PIL import Image, ImageDraw

    nx = n
    ny = max(1, int(round(n * height / width)))
    img = Image.new("1", (nx, ny), 0)
    draw = ImageDraw.Draw(img)
    px = tri[:, :, 0] / width * nx - 0.5  # pixel-centre coordinates
    py = tri[:, :, 1] / height * ny - 0.5
    for xs, ys in zip(px, py):
        draw.polygon([(xs[0], ys[0]), (xs[1], ys[1]), (xs[2], ys[2])], fill=1, outline=1)
    return ~np.asarray(img, dtype=bool)


def initial_pores(mask0: np.ndarray, min_pixels: int = 4):
    """Labels (0 = solid) of the initial pores, tiny specks (< min_pixels, raster noise) dropped."""
    from scipy import ndimage

    lab, n = ndimage.label(mask0)
    sizes = ndimage.sum_labels(np.ones_like(lab), lab, index=np.arange(1, n + 1))
    keep = np.flatnonzero(sizes >= min_pixels) + 1
    remap = np.zeros(n + 1, dtype=np.int32)
    remap[keep] = np.arange(1, len(keep) + 1)
    return remap[lab], len(keep)


def nearest_pore(labels0: np.ndarray) -> np.ndarray:
    """Label of the nearest initial pore pixel, at every pixel."""
    from scipy import ndimage

    _, idx = ndimage.distance_transform_edt(labels0 == 0, return_indices=True)
    return labels0[idx[0], idx[1]]


def pore_areas(labels0: np.ndarray, npores: int, mask: np.ndarray, nearest: np.ndarray | None = None) -> np.ndarray:
    """Pixel count per initial pore (index 0..npores-1) of the uncovered raster `mask`
    (`nearest`: nearest_pore(labels0), when the caller keeps it for several rasters)."""
    if nearest is None:
        nearest = nearest_pore(labels0)
    return np.bincount(nearest[mask], minlength=npores + 1)[1:]


def write_pores_csv(folder: str | Path) -> Path | None:
    """pores.csv from the run folder's snapshots: one row per (state, pore). None if the folder has
    no initial snapshot (fields = "none")."""
    from .output import CSVTable

    folder = Path(folder)
    f0 = folder / "fields" / "snapshot_cycle000_initial.npz"
    if not f0.exists():
        return None
    z0 = np.load(f0)
    W, H = float(z0["width"]), float(z0["height"])
    m0 = uncovered(z0["tri"], W, H)
    labels0, npores = initial_pores(m0)
    pix = (W / m0.shape[1]) * (H / m0.shape[0])
    a0 = np.bincount(labels0.ravel(), minlength=npores + 1)[1:]
    nearest = nearest_pore(labels0)  # one distance transform for all snapshots
    rows = []
    snaps = sorted(folder.glob("fields/snapshot_cycle*_*.npz"))
    for s in snaps:
        name = s.stem[len("snapshot_cycle"):]
        cyc, state = int(name[:3]), name[4:]
        z = np.load(s)
        a = pore_areas(labels0, npores, uncovered(z["tri"], W, H), nearest) if s != f0 else a0
        for i in range(npores):
            rows.append({"cycle": cyc, "state": state, "pore": i + 1, "initial_area_m2": a0[i] * pix,
                         "area_m2": a[i] * pix, "relative_area": a[i] / a0[i] if a0[i] else 0.0,
                         "porosity": a.sum() * pix / (W * H)})
    rows.sort(key=lambda r: (r["cycle"], r["state"] != "initial", r["state"] != "lithiated", r["pore"]))
    out = folder / "pores.csv"
    CSVTable(out, rows).flush()
    return out
