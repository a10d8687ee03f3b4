"""Token models (transformers): the embedding lookup to differentiate, attention read from the
graph (per-layer head-averaged probabilities, rollout, gradient-weighted rollout) and the token
export path of ``edgesal export``."""
