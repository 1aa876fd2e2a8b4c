"""Pores of the deformed RVE: relative area of each initial pore (DESIGN section 3) -> pores.csv.

Pores carry no mesh in a run (they are the space between the particles), so they are found on a
raster of the RVE: the deformed triangles of a snapshot (fields/snapshot_*.npz) are drawn onto
an N x N grid; the uncovered pixels are pore. Pixel size = RVE width / N (N = 512: 31 nm on a
16 um RVE).

At a quarter of the area, the pore space of a random disk packing is one connected network, so
"each pore" means each pore *body* of that network, separated at its throats as in pore-network
extraction from images (the SNOW algorithm: Gostick, Phys. Rev. E 96, 023307, 2017): the peaks
of the distance transform of the initial pore space are the pore centres (a peak that lies
inside the inscribed circle of a larger one is dropped), and a marker-based watershed on the
distance transform assigns every pore pixel to one centre.

At any later state each uncovered pixel belongs to the nearest initial pore *carried along with
the particles*: every initial pore pixel moves with the displacement of the nearest mesh vertex
(the snapshots hold the same triangles, initial and deformed), and a pixel takes the label of the
nearest moved pore pixel. So a pore keeps its identity while the particles around it shift by
more than its size, a pore that splits while it closes keeps one identity, and one that is
squeezed shut has area 0. (Snapshots with other triangles: the nearest initial pore in the fixed
frame.)
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


def initial_pores(mask0: np.ndarray, min_pixels: int = 4, peak_radius: int = 4, throat_ratio: float = 0.7):
    """Labels (0 = solid) of the initial pore bodies, and their number.

    Connected pore regions smaller than `min_pixels` (raster noise) are dropped. The rest is
    split into pore bodies at its throats: markers at the peaks of the distance transform
    (maxima within `peak_radius` pixels; a peak inside the inscribed circle of a larger peak is
    dropped), then a watershed on the distance transform. Two bodies whose throat is wider than
    `throat_ratio` times the inscribed radius of the smaller one are one pore (a bulge, not a
    body: e.g. raster ripples along the narrow gap between two near-touching particles).
    """
    from scipy import ndimage

    lab, n = ndimage.label(mask0)
    sizes = ndimage.sum_labels(np.ones_like(lab), lab, index=np.arange(1, n + 1))
    pore = np.isin(lab, np.flatnonzero(sizes >= min_pixels) + 1)
    if not pore.any():
        return np.zeros(mask0.shape, dtype=np.int32), 0
    dt = ndimage.distance_transform_edt(pore)
    # peaks: plateaus of local maxima, one marker each
    yy, xx = np.mgrid[-peak_radius:peak_radius + 1, -peak_radius:peak_radius + 1]
    disk = xx * xx + yy * yy <= peak_radius * peak_radius
    peaks, npk = ndimage.label(pore & (dt == ndimage.maximum_filter(dt, footprint=disk)),
                               structure=np.ones((3, 3)))
    centres = np.array(ndimage.maximum_position(dt, peaks, index=np.arange(1, npk + 1)), dtype=float)
    radii = dt[tuple(centres.astype(int).T)]
    ridge = _ridge_peaks(dt, centres.astype(int), radii)
    keep = []
    for k in np.argsort(-radii, kind="stable"):  # largest first; drop peaks inside a kept one
        if ridge[k]:
            continue
        if all(np.hypot(*(centres[k] - centres[j])) >= radii[j] for j in keep):
            keep.append(k)
    # every connected region gets at least one marker (its deepest point)
    lut = np.zeros(npk + 1, dtype=np.int32)
    lut[np.sort(keep).astype(int) + 1] = np.arange(1, len(keep) + 1)
    markers = lut[peaks]
    regions, nreg = ndimage.label(pore)
    nm = len(keep)
    for r in range(1, nreg + 1):
        if not markers[regions == r].any():
            nm += 1
            markers[ndimage.maximum_position(dt, regions, index=r)] = nm
    labels = _merge_shallow(_flood(-dt, markers, pore), dt, throat_ratio)
    # number the bodies 1..n in raster order of their first pixel (reproducible)
    ids, first = np.unique(labels.ravel(), return_index=True)
    order = [i for _, i in sorted(zip(first, ids)) if i > 0]
    remap = np.zeros(labels.max() + 1, dtype=np.int32)
    remap[order] = np.arange(1, len(order) + 1)
    return remap[labels], len(order)


def _ridge_peaks(dt: np.ndarray, centres: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each peak (a pixel `centres[k]` of it, distance `values[k]`): True when its plateau (the
    connected pixels of the same distance value) touches a higher pixel, i.e. a ridge such as
    the axis of a uniform channel, not a pore centre."""
    from scipy import ndimage

    ridge = np.zeros(len(values), dtype=bool)
    eight = np.ones((3, 3), dtype=bool)
    for v in np.unique(values):
        plateaus, _ = ndimage.label(dt == v, structure=eight)
        higher = ndimage.binary_dilation(dt > v, structure=eight)
        bad = np.unique(plateaus[higher & (plateaus > 0)])
        k = np.flatnonzero(values == v)
        ridge[k] = np.isin(plateaus[centres[k, 0], centres[k, 1]], bad)
    return ridge


def _flood(cost: np.ndarray, markers: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Marker-based watershed by priority flooding (Meyer 1991; Beucher & Meyer 1993) over the
    pixels of `mask`, 4-connected: pixels are taken in order of increasing cost (ties: first
    come, first served), and an unlabelled neighbour takes the label of the pixel that reached it.
    Basins meet at the ridges of `cost`, here the throats of the pore space."""
    import heapq

    ny, nx = cost.shape
    lab = np.where(mask, markers, 0).astype(np.int32).ravel()
    c = cost.ravel()
    free = mask.ravel() & (lab == 0)
    heap = [(c[i], k, i) for k, i in enumerate(np.flatnonzero(lab > 0))]
    heapq.heapify(heap)
    age = len(heap)
    while heap:
        _, _, i = heapq.heappop(heap)
        y, x = divmod(i, nx)
        for j, ok in ((i - nx, y > 0), (i + nx, y < ny - 1), (i - 1, x > 0), (i + 1, x < nx - 1)):
            if ok and free[j]:
                free[j] = False
                lab[j] = lab[i]
                heapq.heappush(heap, (c[j], age, j))
                age += 1
    return lab.reshape(ny, nx)


def _merge_shallow(labels: np.ndarray, dt: np.ndarray, throat_ratio: float) -> np.ndarray:
    """Merge each basin into a neighbour when the throat between them (the largest distance
    value on their common border) exceeds `throat_ratio` times the basin's own peak."""
    n = int(labels.max())
    peak = np.zeros(n + 1)
    np.maximum.at(peak, labels.ravel(), dt.ravel())
    saddle: dict[tuple[int, int], float] = {}
    for a, b, da, db in ((labels[:, :-1], labels[:, 1:], dt[:, :-1], dt[:, 1:]),
                         (labels[:-1, :], labels[1:, :], dt[:-1, :], dt[1:, :])):
        m = (a > 0) & (b > 0) & (a != b)
        for i, j, v in zip(a[m], b[m], np.minimum(da[m], db[m])):
            key = (min(i, j), max(i, j))
            if v > saddle.get(key, -1.0):
                saddle[key] = v
    root = np.arange(n + 1)

    def find(k):
        while root[k] != k:
            root[k] = root[root[k]]
            k = root[k]
        return k

    # widest throats first: a basin joins its neighbour when the throat is nearly as wide as it
    for (i, j), v in sorted(saddle.items(), key=lambda kv: -kv[1]):
        ri, rj = find(i), find(j)
        if ri != rj and v >= throat_ratio * min(peak[ri], peak[rj]):
            lo, hi = (ri, rj) if peak[ri] < peak[rj] else (rj, ri)
            root[lo] = hi
    return np.array([find(k) for k in range(n + 1)], dtype=np.int32)[labels]


def nearest_pore(labels0: np.ndarray) -> np.ndarray:
    """Label of the nearest initial pore pixel, at every pixel."""
    from scipy import ndimage

    _, idx = ndimage.distance_transform_edt(labels0 == 0, return_indices=True)
    return labels0[idx[0], idx[1]]


class CarriedPores:
    """The initial pores carried along with the particles (see the module docstring).

    Built once from the initial snapshot: every initial pore pixel and its nearest mesh vertex.
    ``labels(tri, mask)``: for a deformed snapshot with the same triangles, the label of the
    nearest moved pore pixel at each uncovered pixel of ``mask`` (0 elsewhere)."""

    def __init__(self, labels0: np.ndarray, tri0: np.ndarray, width: float, height: float):
        from scipy.spatial import cKDTree

        self.shape = labels0.shape
        ny, nx = self.shape
        self.hx, self.hy = width / nx, height / ny
        iy, ix = np.nonzero(labels0)
        self.lab = labels0[iy, ix]
        self.p = np.column_stack(((ix + 0.5) * self.hx, (iy + 0.5) * self.hy))
        self.v0 = tri0.reshape(-1, 2)
        _, self.k = cKDTree(self.v0).query(self.p)

    def labels(self, tri: np.ndarray, mask: np.ndarray) -> np.ndarray:
        from scipy.spatial import cKDTree

        u = tri.reshape(-1, 2) - self.v0
        my, mx = np.nonzero(mask)
        out = np.zeros(self.shape, dtype=self.lab.dtype)
        if len(my) and len(self.p):
            _, j = cKDTree(self.p + u[self.k]).query(np.column_stack(((mx + 0.5) * self.hx, (my + 0.5) * self.hy)))
            out[my, mx] = self.lab[j]
        return out


def pore_areas(labels0: np.ndarray, npores: int, mask: np.ndarray, nearest: np.ndarray | None = None) -> np.ndarray:
    """Pixel count per initial pore (index 0..npores-1) of the uncovered raster `mask`
    (`nearest`: the pore label at every pixel of `mask`, e.g. nearest_pore(labels0) kept for
    several rasters, or CarriedPores.labels; default nearest_pore(labels0))."""
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
    carried = CarriedPores(labels0, z0["tri"], W, H)
    nearest = None  # fixed frame, for snapshots with other triangles (computed when first needed)
    rows = []
    snaps = sorted(folder.glob("fields/snapshot_cycle*_*.npz"))
    for s in snaps:
        name = s.stem[len("snapshot_cycle"):]
        cyc, state = int(name[:3]), name[4:]
        z = np.load(s)
        if s == f0:
            a = a0
        else:
            mask = uncovered(z["tri"], W, H)
            if z["tri"].shape == z0["tri"].shape:
                near = carried.labels(z["tri"], mask)
            else:
                nearest = nearest_pore(labels0) if nearest is None else nearest
                near = nearest
            a = pore_areas(labels0, npores, mask, near)
        for i in range(npores):
            rows.append({"cycle": cyc, "state": state, "pore": i + 1, "initial_area_m2": a0[i] * pix,
                         "area_m2": a[i] * pix, "relative_area": a[i] / a0[i] if a0[i] else 0.0,
                         "porosity": a.sum() * pix / (W * H)})
    rows.sort(key=lambda r: (r["cycle"], r["state"] != "initial", r["state"] != "lithiated", r["pore"]))
    out = folder / "pores.csv"
    CSVTable(out, rows).flush()
    return out
