"""The package version, in the lowest layer so that every module (and the build, through
setuptools' ``dynamic`` version) can read it without importing the package root."""

__version__ = "0.1.0"
