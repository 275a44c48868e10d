"""genlab: a readable, fast lab for generative image modelling."""

__version__ = "0.1.0"
