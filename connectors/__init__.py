"""I/O at Duoli's edges: the embedded broker, Kafka admin tools and the Redis serving store.

Every third-party error is translated here, at the boundary, into ``duoli.errors.BrokerError``
or ``duoli.errors.StoreError``. The submodules are imported on demand so that importing one
connector never pulls in the client libraries of the others.
"""

from __future__ import annotations

__all__: list[str] = []
