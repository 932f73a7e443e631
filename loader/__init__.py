"""FaaSLoad's loader: injects traces into OpenWhisk, or generates a dataset, and stores the results.

Public helpers, as in the original FaaSLoad README::

    from loader import DatabaseConfiguration

    from loader import manifest as functions
    functions.load_to_database(functions.read_functions('manifest.yml'), db_cfg)
"""

from loader.storage.database import DatabaseConfiguration

__all__ = ["DatabaseConfiguration"]
