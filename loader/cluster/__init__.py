"""Scale-out: several loader shards in one experiment, coordinated through PostgreSQL (docs/scale-out.md).

``shard.py`` splits the traces by user; ``clock_offset.py`` measures this host's clock against
the database server's; ``membership.py`` joins the experiment, agrees on the start instant,
heartbeats and, once every shard is done, writes the experiment's aggregate.
"""
