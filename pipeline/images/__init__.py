"""Image steps: decode-validate, perceptual hashing, near-duplicate search, clustering."""
