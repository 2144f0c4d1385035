"""OAR, the Grenoble cluster batch scheduler, rebuilt in Python as an appliance."""

__version__ = "0.1.0"
