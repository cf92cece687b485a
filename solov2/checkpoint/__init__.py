"""Checkpoints: reading and writing them atomically (``io``), the config and classes they carry and the model
they describe (``model_config``), and converters from other SOLOv2 code bases' key names (``convert``).

Nothing is imported here, so importing one module stays light."""
