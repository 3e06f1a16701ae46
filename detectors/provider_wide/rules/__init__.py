"""Provider-wide rules: one module per detector id, its fixture cases beside it (see the package)."""
