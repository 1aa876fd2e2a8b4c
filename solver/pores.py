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

Moving sides (free or under stack pressure): the raster covers the union of the initial box and
every deformed box, with the same pixel size; at each state only the pixels inside that state's
deformed box count (the snapshot's `box`; for older snapshots the box from the run's cycles.csv
width/height changes when the left and bottom sides are rollers, else the initial box).

Fig. 3d of Xiong 2024 (`write_fig3d`): per cycle and pore, the area relative to the initial one at
the end of discharge (lithiated) and at the end of charge (delithiated), and per cycle the share
of pores below 1 - theta_charge of their initial area at the end of charge (78 % at theta = 0.22:
the paper's area without creep) and the share that shrink during delithiation (the charged area
below the discharged one by more than SHRINK_TOL of the initial area: raster noise is ~1 %).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_PIXELS = 512


#: a pore "shrinks during delithiation" when its charged area is below the discharged one by more
#: than this fraction of its initial area (the raster's noise on a pore of ~50 pixels across)
SHRINK_TOL = 0.01


def uncovered(tri: np.ndarray, width: float, height: float, n: int = N_PIXELS) -> np.ndarray:
    """Boolean (ny, nx) raster of the box [0, width] x [0, height], True where no triangle covers the
    pixel centre."""
    nx = n
    ny = max(1, int(round(n * height / width)))
    return _raster(tri, Grid(0.0, 0.0, width / nx, height / ny, nx, ny))


class Grid:
    """A pixel grid: origin (x0, y0) of its lower-left corner, pixel size (hx, hy), nx x ny pixels."""

    def __init__(self, x0, y0, hx, hy, nx, ny):
        self.x0, self.y0, self.hx, self.hy, self.nx, self.ny = float(x0), float(y0), float(hx), float(hy), nx, ny

    @property
    def shape(self):
        return (self.ny, self.nx)

    def centres(self):
        """(x, y) of the pixel centres, each (ny, nx)."""
        return np.meshgrid(self.x0 + (np.arange(self.nx) + 0.5) * self.hx,
                           self.y0 + (np.arange(self.ny) + 0.5) * self.hy)

    def inside(self, box) -> np.ndarray:
        """True at the pixels whose centre lies in box = (x0, x1, y0, y1)."""
        x, y = self.centres()
        return (x >= box[0]) & (x <= box[1]) & (y >= box[2]) & (y <= box[3])


def box_grid(width: float, height: float, boxes, n: int = N_PIXELS) -> Grid:
    """The grid with the pixel size of `uncovered(.., width, height, n)` that covers [0, width] x
    [0, height] and every box (x0, x1, y0, y1) of `boxes` (the same grid when none leaves it)."""
    nx0 = n
    ny0 = max(1, int(round(n * height / width)))
    hx, hy = width / nx0, height / ny0
    b = np.array([(0.0, width, 0.0, height), *boxes], dtype=float)
    # whole pixels beyond the initial box on each side (a box a hair outside adds none)
    lo_x = int(np.ceil(max(0.0, -b[:, 0].min()) / hx - 1e-6))
    hi_x = int(np.ceil(max(0.0, b[:, 1].max() - width) / hx - 1e-6))
    lo_y = int(np.ceil(max(0.0, -b[:, 2].min()) / hy - 1e-6))
    hi_y = int(np.ceil(max(0.0, b[:, 3].max() - height) / hy - 1e-6))
    return Grid(-lo_x * hx, -lo_y * hy, hx, hy, nx0 + lo_x + hi_x, ny0 + lo_y + hi_y)


def _raster(tri: np.ndarray, g: Grid) -> np.ndarray:
    """Boolean raster of grid g, True where no triangle covers the pixel centre."""
    from PIL import Image, ImageDraw

    img = Image.new("1", (g.nx, g.ny), 0)
    draw = ImageDraw.Draw(img)
    px = (tri[:, :, 0] - g.x0) / g.hx - 0.5  # pixel-centre coordinates
    py = (tri[:, :, 1] - g.y0) / g.hy - 0.5
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

    def __init__(self, labels0: np.ndarray, tri0: np.ndarray, width: float, height: float, grid: Grid | None = None):
        from scipy.spatial import cKDTree

        self.shape = labels0.shape
        ny, nx = self.shape
        g = grid or Grid(0.0, 0.0, width / nx, height / ny, nx, ny)
        self.x0, self.y0, self.hx, self.hy = g.x0, g.y0, g.hx, g.hy
        iy, ix = np.nonzero(labels0)
        self.lab = labels0[iy, ix]
        self.p = np.column_stack((self.x0 + (ix + 0.5) * self.hx, self.y0 + (iy + 0.5) * self.hy))
        self.v0 = tri0.reshape(-1, 2)
        _, self.k = cKDTree(self.v0).query(self.p)

    def labels(self, tri: np.ndarray, mask: np.ndarray) -> np.ndarray:
        from scipy.spatial import cKDTree

        u = tri.reshape(-1, 2) - self.v0
        my, mx = np.nonzero(mask)
        out = np.zeros(self.shape, dtype=self.lab.dtype)
        if len(my) and len(self.p):
            _, j = cKDTree(self.p + u[self.k]).query(np.column_stack((self.x0 + (mx + 0.5) * self.hx,
                                                                      self.y0 + (my + 0.5) * self.hy)))
            out[my, mx] = self.lab[j]
        return out


def pore_areas(labels0: np.ndarray, npores: int, mask: np.ndarray, nearest: np.ndarray | None = None) -> np.ndarray:
    """Pixel count per initial pore (index 0..npores-1) of the uncovered raster `mask`
    (`nearest`: the pore label at every pixel of `mask`, e.g. nearest_pore(labels0) kept for
    several rasters, or CarriedPores.labels; default nearest_pore(labels0))."""
    if nearest is None:
        nearest = nearest_pore(labels0)
    return np.bincount(nearest[mask], minlength=npores + 1)[1:]


def _boxes(folder: Path, snaps: list, width: float, height: float) -> dict:
    """{snapshot path: deformed box (x0, x1, y0, y1)}: the snapshot's own `box`, else (older
    snapshots) the run's cycles.csv width/height changes when the left and bottom sides are
    rollers, else the initial box."""
    from .output import CSVTable

    rows = {(int(r["cycle"]), r["state"]): r for r in CSVTable.read(folder / "cycles.csv")}
    fixed_origin = True
    cfg = folder / "config.toml"
    if cfg.exists():
        import tomllib

        try:
            b = tomllib.loads(cfg.read_text()).get("boundary", {})
            fixed_origin = b.get("left", "roller") == "roller" and b.get("bottom", "roller") == "roller"
        except (tomllib.TOMLDecodeError, OSError):
            fixed_origin = False
    out = {}
    for s in snaps:
        with np.load(s) as z:
            if "box" in z.files:
                out[s] = tuple(float(v) for v in z["box"])
                continue
        name = s.stem[len("snapshot_cycle"):]
        r = rows.get((int(name[:3]), name[4:]))
        if r is not None and fixed_origin:
            out[s] = (0.0, width * (1.0 + float(r.get("width_change", 0.0))), 0.0,
                      height * (1.0 + float(r.get("height_change", 0.0))))
        else:
            out[s] = (0.0, width, 0.0, height)
    return out


def write_pores_csv(folder: str | Path) -> Path | None:
    """pores.csv from the run folder's snapshots: one row per (state, pore); and the Fig. 3d table
    (write_fig3d). None if the folder has no initial snapshot (fields = "none")."""
    from .output import CSVTable

    folder = Path(folder)
    f0 = folder / "fields" / "snapshot_cycle000_initial.npz"
    if not f0.exists():
        return None
    z0 = np.load(f0)
    W, H = float(z0["width"]), float(z0["height"])
    snaps = sorted(folder.glob("fields/snapshot_cycle*_*.npz"))
    boxes = _boxes(folder, snaps, W, H)
    grid = box_grid(W, H, [boxes[s] for s in snaps])
    m0 = _raster(z0["tri"], grid) & grid.inside(boxes.get(f0, (0.0, W, 0.0, H)))
    labels0, npores = initial_pores(m0)
    pix = grid.hx * grid.hy
    a0 = np.bincount(labels0.ravel(), minlength=npores + 1)[1:]
    carried = CarriedPores(labels0, z0["tri"], W, H, grid)
    nearest = None  # fixed frame, for snapshots with other triangles (computed when first needed)
    rows = []
    for s in snaps:
        name = s.stem[len("snapshot_cycle"):]
        cyc, state = int(name[:3]), name[4:]
        z = np.load(s)
        box = boxes[s]
        if s == f0:
            a = a0
        else:
            mask = _raster(z["tri"], grid) & grid.inside(box)
            if z["tri"].shape == z0["tri"].shape:
                near = carried.labels(z["tri"], mask)
            else:
                nearest = nearest_pore(labels0) if nearest is None else nearest
                near = nearest
            a = pore_areas(labels0, npores, mask, near)
        for i in range(npores):
            rows.append({"cycle": cyc, "state": state, "pore": i + 1, "initial_area_m2": a0[i] * pix,
                         "area_m2": a[i] * pix, "relative_area": a[i] / a0[i] if a0[i] else 0.0,
                         "porosity": a.sum() * pix / ((box[1] - box[0]) * (box[3] - box[2]))})
    rows.sort(key=lambda r: (r["cycle"], r["state"] != "initial", r["state"] != "lithiated", r["pore"]))
    out = folder / "pores.csv"
    CSVTable(out, rows).flush()
    write_fig3d(folder, rows)
    return out


def fig3d_table(rows: list[dict], theta_charge: dict | None = None) -> tuple[list[dict], list[dict]]:
    """The Fig. 3d comparison from pores.csv rows: (per pore, per cycle).

    Per (cycle, pore) with both a lithiated (end of discharge) and a delithiated (end of charge)
    state: relative areas at both, `below_threshold` (charged < threshold) and `shrank` (charged <
    discharged - SHRINK_TOL). Per cycle: the number of pores, the threshold (1 - theta at the end of
    charge, from `theta_charge` {cycle: theta}; 0.78 at theta = 0.22; 1 when unknown), the shares
    below it and that shrank, and the median relative areas."""
    by = {(int(r["cycle"]), r["state"], int(r["pore"])): float(r["relative_area"]) for r in rows}
    cycles = sorted({c for c, st, _ in by if st == "lithiated"} & {c for c, st, _ in by if st == "delithiated"})
    per_pore, per_cycle = [], []
    for c in cycles:
        th = 1.0 - float((theta_charge or {}).get(c, 0.0))
        pores = sorted(p for cc, st, p in by if cc == c and st == "lithiated" and (c, "delithiated", p) in by)
        dis = np.array([by[(c, "lithiated", p)] for p in pores])
        ch = np.array([by[(c, "delithiated", p)] for p in pores])
        below = ch < th
        shrank = ch < dis - SHRINK_TOL
        for k, p in enumerate(pores):
            per_pore.append({"cycle": c, "pore": p, "relative_area_discharged": float(dis[k]),
                             "relative_area_charged": float(ch[k]), "threshold": th,
                             "below_threshold": int(below[k]), "shrank": int(shrank[k])})
        n = len(pores)
        per_cycle.append({"cycle": c, "pores": n, "theta_charged": 1.0 - th, "threshold": th,
                          "share_below_threshold": float(below.mean()) if n else 0.0,
                          "share_shrank": float(shrank.mean()) if n else 0.0,
                          "pores_below_threshold": int(below.sum()), "pores_shrank": int(shrank.sum()),
                          "median_relative_area_discharged": float(np.median(dis)) if n else 0.0,
                          "median_relative_area_charged": float(np.median(ch)) if n else 0.0})
    return per_pore, per_cycle


def write_fig3d(folder: str | Path, rows: list[dict] | None = None) -> Path | None:
    """pores_fig3d.csv (per cycle and pore) and pores_fig3d_cycles.csv (per cycle) from pores.csv
    rows (read from the folder when not given) and the theta at the end of charge (cycles.csv).
    None when no cycle has both states."""
    from .output import CSVTable

    folder = Path(folder)
    rows = CSVTable.read(folder / "pores.csv") if rows is None else rows
    theta = {}
    for r in CSVTable.read(folder / "cycles.csv"):
        if r.get("state") == "delithiated":
            th = [float(v) for k, v in r.items() if k.startswith("theta_") and isinstance(v, (int, float))]
            theta[int(r["cycle"])] = max(th) if th else 0.0  # the active phase (an inactive one stays 0)
    per_pore, per_cycle = fig3d_table(rows, theta)
    if not per_pore:
        return None
    CSVTable(folder / "pores_fig3d.csv", per_pore).flush()
    out = folder / "pores_fig3d_cycles.csv"
    CSVTable(out, per_cycle).flush()
    return out
