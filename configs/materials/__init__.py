"""The cited materials library: one TOML file per material (see creep_cathode.library and
docs/materials.md). Installed as the data package creep_cathode.materials_library."""
