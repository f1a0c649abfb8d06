"""Jobs: the request model, the state machine and the store."""
