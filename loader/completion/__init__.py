"""Completions: OpenWhisk user events from Kafka, the tracker that fetches each activation record, and the
monitor query for the activation's resources."""
