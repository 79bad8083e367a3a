"""What every method stands on: running the model, argument checks, batching."""
