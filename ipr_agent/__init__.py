"""ipr's agent for Python web applications: the wire format, the sender and
the WSGI middleware. Standard library only, so it installs into a web
application's own environment on its own (distribution ``ipr-agent``,
built from packaging/agent/ of ipr's tree; docs/agent.md)."""

# ipr's version (both distributions, and the Debian packages' changelogs).
__version__ = "0.14.0"
