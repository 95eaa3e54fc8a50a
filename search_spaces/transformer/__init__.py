"""Fixed transformers (decoders, encoders, vision transformers) and the published ones."""
