"""The dataset in PostgreSQL: the only package of the loader that runs SQL."""
