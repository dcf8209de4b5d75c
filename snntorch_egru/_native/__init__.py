"""Native helpers of the CPU path, built at install time (``setup.py``; private)."""
