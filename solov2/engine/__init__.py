"""Training: the loop (``trainer``), launching processes (``launch``), the sampler, reproducible randomness
(``rng``), Ctrl-C handling (``interrupt``), the LR schedule (``schedule``) and the collapse guard (``monitor``).

Nothing is imported here, so importing one module stays light."""
