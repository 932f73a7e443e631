"""The OpenWhisk side of the loader: its HTTP client, REST client, user keys, action checks and deployment.

The seam for another platform: a package with the same roles."""
