"""The bundled recipes (TOML data only): installed as the package `pairforge.bundled_recipes`."""
