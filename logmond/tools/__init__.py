"""Tools around logmond that are not the daemon: the traffic generator and the live demo."""
