"""pores.csv: raster areas of the pores between triangulated solids, against exact areas."""

import numpy as np
import pytest

from creep_cathode.pores import N_PIXELS, initial_pores, pore_areas, uncovered, write_pores_csv

W = H = 16e-6


def _rect_tris(x0, y0, x1, y1):
    return np.array([[[x0, y0], [x1, y0], [x1, y1]], [[x0, y0], [x1, y1], [x0, y1]]])


def _solid_with_holes(holes):
    """Triangles covering the box except the axis-aligned rectangles `holes` (a grid of cells)."""
    xs = sorted({0.0, W, *[h[0] for h in holes], *[h[2] for h in holes]})
    ys = sorted({0.0, H, *[h[1] for h in holes], *[h[3] for h in holes]})
    tris = []
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            cx, cy = 0.5 * (xs[i] + xs[i + 1]), 0.5 * (ys[j] + ys[j + 1])
            if any(h[0] < cx < h[2] and h[1] < cy < h[3] for h in holes):
                continue
            tris.append(_rect_tris(xs[i], ys[j], xs[i + 1], ys[j + 1]))
    return np.concatenate(tris)


def test_two_pores_areas_and_shrinkage(tmp_path):
    h1 = (2e-6, 2e-6, 6e-6, 5e-6)  # 12 um^2
    h2 = (9e-6, 9e-6, 14e-6, 14e-6)  # 25 um^2
    t0 = _solid_with_holes([h1, h2])
    pix = W / N_PIXELS
    m0 = uncovered(t0, W, H)
    lab, n = initial_pores(m0)
    assert n == 2
    a = np.sort(np.bincount(lab.ravel())[1:] * pix * pix)
    np.testing.assert_allclose(a, [12e-12, 25e-12], rtol=0.02)
    # the second pore is half filled (its lower half), the first closes completely
    h2_half = (9e-6, 11.5e-6, 14e-6, 14e-6)
    t1 = _solid_with_holes([h2_half])
    a1 = pore_areas(lab, n, uncovered(t1, W, H)) * pix * pix
    big = int(np.argmax(np.bincount(lab.ravel())[1:]))
    np.testing.assert_allclose(a1[big], 12.5e-12, rtol=0.03)
    assert a1[1 - big] == 0.0

    (tmp_path / "fields").mkdir()
    for name, t in (("snapshot_cycle000_initial", t0), ("snapshot_cycle001_lithiated", t1)):
        np.savez(tmp_path / "fields" / f"{name}.npz", tri=t, width=W, height=H)
    path = write_pores_csv(tmp_path)
    rows = path.read_text().splitlines()
    assert rows[0] == "cycle,state,pore,initial_area_m2,area_m2,relative_area,porosity"
    last = [r.split(",") for r in rows[1:] if r.startswith("1,lithiated")]
    rel = sorted(float(r[5]) for r in last)
    assert rel[0] == 0.0 and abs(rel[1] - 0.5) < 0.03
    assert abs(float(last[0][6]) - 12.5e-12 / (W * H)) < 0.03 * 12.5e-12 / (W * H)


def test_no_initial_snapshot_gives_none(tmp_path):
    assert write_pores_csv(tmp_path) is None


def _disks(n, centres, r):
    y, x = np.mgrid[0:n, 0:n]
    return np.any([(x - cx) ** 2 + (y - cy) ** 2 <= r * r for cx, cy in centres], axis=0)


def test_connected_pore_space_is_split_at_throats():
    # two round pore bodies (r = 60 px) joined by a channel 16 px wide: two pores, split in the
    # channel, each about a disk plus half the channel
    n, r = 512, 60
    m = _disks(n, [(150, 256), (362, 256)], r)
    m[248:264, 150:362] = True
    lab, k = initial_pores(m)
    assert k == 2
    areas = np.bincount(lab.ravel())[1:]
    expect = np.pi * r * r + 16 * (106 - r)  # disk + half of the channel outside it
    np.testing.assert_allclose(areas, [expect, expect], rtol=0.03)
    assert lab[256, 150] != lab[256, 362]


def test_bulges_and_elongated_pores_stay_one_pore():
    n = 512
    peanut = _disks(n, [(226, 256), (286, 256)], 60)  # waist 0.87 of the radius: one body
    slot = np.zeros((n, n), dtype=bool)
    slot[236:276, 100:412] = True  # 40 x 312 px: a ridge, not a chain of bodies
    for m in (peanut, slot):
        lab, k = initial_pores(m)
        assert k == 1
        assert (lab > 0).sum() == m.sum()


def _sheet_with_round_holes(centres, r, shift=0.0, n=160):
    """A structured triangulated sheet over [-W/2, 3W/2] x [0, H], cells whose centre lies in a hole
    (radius r at the given centres) left out, then moved right by `shift` (a rigid translation)."""
    xs = np.linspace(-0.5 * W, 1.5 * W, 2 * n + 1)
    ys = np.linspace(0.0, H, n + 1)
    tris = []
    for i in range(2 * n):
        for j in range(n):
            cx, cy = 0.5 * (xs[i] + xs[i + 1]), 0.5 * (ys[j] + ys[j + 1])
            if any(np.hypot(cx - x, cy - y) < r for x, y in centres):
                continue
            tris.append(_rect_tris(xs[i], ys[j], xs[i + 1], ys[j + 1]))
    t = np.concatenate(tris)
    t[:, :, 0] += shift
    return t


def test_pores_are_followed_with_the_particles(tmp_path):
    """The solid moves right by more than the pores' spacing: each pore keeps its area and its
    identity (in the fixed frame, pore A would land nearest to B's old place)."""
    r = 1.2e-6
    centres = [(5e-6, 8e-6), (9e-6, 8e-6)]  # A, B
    t0 = _sheet_with_round_holes(centres, r)
    t1 = _sheet_with_round_holes(centres, r, shift=3.2e-6)  # A to x = 8.2 um: 0.8 um from B's start
    (tmp_path / "fields").mkdir()
    for name, t in (("snapshot_cycle000_initial", t0), ("snapshot_cycle001_lithiated", t1)):
        np.savez(tmp_path / "fields" / f"{name}.npz", tri=t, width=W, height=H)
    rows = [r.split(",") for r in write_pores_csv(tmp_path).read_text().splitlines()[1:]]
    rel = [float(r[5]) for r in rows if r[1] == "lithiated"]
    assert len(rel) == 2
    np.testing.assert_allclose(rel, 1.0, atol=0.03)  # exact: a rigid translation keeps both areas


def _write(folder, snaps, cycles=None, boundary=None):
    (folder / "fields").mkdir(exist_ok=True)
    for name, t, box in snaps:
        extra = {} if box is None else {"box": np.array(box)}
        np.savez(folder / "fields" / f"snapshot_{name}.npz", tri=t, width=W, height=H, **extra)
    if cycles:
        keys = list(cycles[0])
        (folder / "cycles.csv").write_text(",".join(keys) + "\n" + "".join(
            ",".join(str(r[k]) for k in keys) + "\n" for r in cycles))
    if boundary:
        (folder / "config.toml").write_text("[boundary]\n" + "".join(f'{k} = {v}\n' for k, v in boundary.items()))


@pytest.mark.parametrize("scale", [0.9, 1.1])
@pytest.mark.parametrize("box_in_snapshot", [True, False])
def test_pore_at_a_moving_top_side(tmp_path, scale, box_in_snapshot):
    """The solid (with a pore open to the top side, 4 x 4 um) is stretched vertically by `scale`, as
    the top side under stack pressure moves: the pore's area scales exactly, and nothing above the
    deformed box (scale 0.9) is pore, nor is a pore cut off beyond the initial box (scale 1.1). The
    deformed box comes from the snapshot, or (older snapshots) from cycles.csv's height_change."""
    hole = (4e-6, 12e-6, 8e-6, 16e-6)
    t0 = _solid_with_holes([hole])
    t1 = t0.copy()
    t1[:, :, 1] *= scale
    box = (0.0, W, 0.0, scale * H)
    cyc = [{"cycle": 1, "state": "lithiated", "theta_Se": 1.0, "width_change": 0.0, "height_change": scale - 1}]
    _write(tmp_path, [("cycle000_initial", t0, (0.0, W, 0.0, H) if box_in_snapshot else None),
                      ("cycle001_lithiated", t1, box if box_in_snapshot else None)],
           cycles=None if box_in_snapshot else cyc,
           boundary=None if box_in_snapshot else {"left": '"roller"', "bottom": '"roller"', "top": "{ pressure = 1e8 }"})
    rows = [r.split(",") for r in write_pores_csv(tmp_path).read_text().splitlines()[1:]]
    lit = [r for r in rows if r[1] == "lithiated"]
    assert len(lit) == 1
    assert float(lit[0][3]) == pytest.approx(16e-12, rel=0.02)
    assert float(lit[0][5]) == pytest.approx(scale, rel=0.02)
    assert float(lit[0][6]) == pytest.approx(scale * 16e-12 / (W * scale * H), rel=0.03)


def test_fig3d_shares_under_partial_delithiation(tmp_path):
    """Three pores (12, 25 and 6 um^2) that shrink on lithiation to 1/2, 0.6 and 0.9 of their area and
    end the charge (theta = 0.22: threshold 0.78) at 0.3 (shrank further), 0.7 and 0.95 (re-opened):
    2 of 3 below 78 %, 1 of 3 shrank during delithiation; per-pore relative areas as built."""
    from creep_cathode.pores import SHRINK_TOL, write_fig3d
    from creep_cathode.output import CSVTable

    def holes(f1, f2, f3):  # each pore keeps its lower edge; its height scales with f
        return [(2e-6, 2e-6, 6e-6, 2e-6 + 3e-6 * f1), (9e-6, 9e-6, 14e-6, 9e-6 + 5e-6 * f2),
                (2e-6, 10e-6, 5e-6, 10e-6 + 2e-6 * f3)]

    t0 = _solid_with_holes(holes(1, 1, 1))
    tl = _solid_with_holes(holes(0.5, 0.6, 0.9))
    tc = _solid_with_holes(holes(0.3, 0.7, 0.95))
    cyc = [{"cycle": 1, "state": "lithiated", "theta_Se": 1.0, "theta_MSe": 0.0},
           {"cycle": 1, "state": "delithiated", "theta_Se": 0.22, "theta_MSe": 0.0}]
    _write(tmp_path, [("cycle000_initial", t0, None), ("cycle001_lithiated", tl, None),
                      ("cycle001_delithiated", tc, None)], cycles=cyc)
    write_pores_csv(tmp_path)  # writes the Fig. 3d tables too
    per_cycle = CSVTable.read(tmp_path / "pores_fig3d_cycles.csv")
    assert len(per_cycle) == 1
    c = per_cycle[0]
    assert c["pores"] == 3 and c["threshold"] == pytest.approx(0.78)
    assert c["pores_below_threshold"] == 2 and c["share_below_threshold"] == pytest.approx(2 / 3)
    assert c["pores_shrank"] == 1 and c["share_shrank"] == pytest.approx(1 / 3)
    per_pore = CSVTable.read(tmp_path / "pores_fig3d.csv")
    got = sorted((r["relative_area_discharged"], r["relative_area_charged"]) for r in per_pore)
    np.testing.assert_allclose(got, [(0.5, 0.3), (0.6, 0.7), (0.9, 0.95)], atol=0.02)
    assert SHRINK_TOL < 0.05  # the 0.05 re-opening of the third pore is not counted as shrinking
    assert write_fig3d(tmp_path) is not None  # again from the files alone
