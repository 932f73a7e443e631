"""Completions: OpenWhisk user events from Kafka, and the tracker that fetches each activation record and
asks the monitor for its resources."""
