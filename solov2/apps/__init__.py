"""What the ``solov2`` sub-commands do beyond training (``solov2.engine.launch``): ``predict`` (images, folders,
videos -> pictures and COCO results), ``evaluate`` (``solov2 eval``), ``data_tools`` (``check-data``,
``labelme-to-coco``) and ``demo``. ``solov2.cli`` only parses arguments and calls these."""
