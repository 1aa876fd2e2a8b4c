"""Import `dolfinx_solver` (the PyPI DOLFINx/PETSc wheel) before dolfinx/petsc4py when it is there.

With a conda-forge DOLFINx the package is absent and nothing needs doing."""

try:  # pragma: no cover - depends on the installation
    import dolfinx_solver  # noqa: F401
except ImportError:  # conda-forge DOLFINx
    pass
