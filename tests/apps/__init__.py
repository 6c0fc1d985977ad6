"""Applications that tests serve with ``gateway serve --app`` or import for ``gateway schema``."""
