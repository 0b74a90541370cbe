"""The pure monitoring core: lines and log time in, events and replies out.

Nothing here touches a clock, a file, a socket or a thread: the shell beside this package
passes in every fact it gathers. tests/test_purity.py enforces it.
"""
