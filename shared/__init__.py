"""Code both logmond and logmonctl import: wire protocol, paths, event schema. Stdlib + msgpack only."""
