"""Several servers as one: the shared registry on Redis (needs redis-py).

:mod:`.scripts` are the Lua scripts that change the shared state;
:mod:`.table` is a node's own copy of the cluster's table of clients;
:mod:`.leases` decides when a node must give its clients up;
:mod:`.registry` is the :class:`~filedock.server.registry.Registry` built on them.
Imported only when ``--registry`` is given: the server needs nothing beyond the
standard library otherwise.
"""
