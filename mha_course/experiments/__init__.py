"""What trains or runs models to produce a result (the layer above models and analysis)."""
