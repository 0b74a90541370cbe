"""logmonctl: query and watch a running logmond."""
