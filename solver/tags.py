"""Mesh tags and box sides shared by the mesh generator, the mechanics and contact (no imports).

Cell tag i + 1 is body i (a particle, or the block); facet tag i + 1 is the boundary of body i
away from the box; the pore space (meshed only for `creep-cathode mesh`) is PORE_TAG; facets on
a box side carry WALL_TAGS[side].
"""

SIDES = ("left", "right", "bottom", "top")
#: the coordinate a side is normal to (0: x, 1: y)
NORMAL_AXIS = {"left": 0, "right": 0, "bottom": 1, "top": 1}
NORMAL_SIGN = {"left": -1.0, "right": 1.0, "bottom": -1.0, "top": 1.0}  # outward normal = sign e_axis
PORE_TAG = 100000
WALL_TAGS = {"left": 100001, "right": 100002, "bottom": 100003, "top": 100004}
