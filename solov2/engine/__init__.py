"""Training and evaluation: the loop (``trainer``), checkpoints, the sampler, reproducible randomness
(``rng``), Ctrl-C handling (``interrupt``), the LR schedule and process groups (``distributed``).

Nothing is imported here, so ``import solov2.engine.checkpoint`` stays light."""
