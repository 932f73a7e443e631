"""Generator mode: every function on every input with random valid parameters, checkpointed."""
