"""logmond: follow an HTTP access log and keep rolling traffic statistics and a high-traffic alert."""

__version__ = "0.1.0"
