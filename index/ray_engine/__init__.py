"""The Ray engine of ``build_index``: inventory reading and validation (``inventory``),
embedding actors (``embed``), shard actors (``shards``) and the build (``build``).

Importing this package does not import Ray; its functions do.
"""
