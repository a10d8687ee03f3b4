"""Tools built on the export: ``edgesal bench`` (the one timing scheme every benchmark uses),
``edgesal demo`` and ``edgesal doctor``."""
