"""The shipped model bundles, installed as the package `ser_models` (see pyproject.toml)."""
