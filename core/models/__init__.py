"""Model profiles (the registry), bundled offline models, and loading checkpoints from disk."""
