"""The installed distribution's version, from its metadata: one place for it."""
from importlib import metadata

try:
    __version__ = metadata.version("fastmlp")
except metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"
