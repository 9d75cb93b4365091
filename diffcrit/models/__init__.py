"""Model adapters: the one denoiser contract, the model families, loading, conditioning, schedulers, built-ins."""
