"""The Ray engine of ``build_index``: inventory reading and validation (``inventory``),
embedding actors (``embed``), shard actors (``shards``) and ``RayEngine`` (``engine``), the strategy
``index.build.build_index(..., engine="ray")`` runs.

Importing this package does not import Ray; its functions do.
"""
