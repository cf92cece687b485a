"""What the ``solov2`` sub-commands do: ``predict`` (images, folders, videos -> pictures and COCO results),
``evaluate`` (``solov2 eval``), ``data_tools`` (``check-data``, ``labelme-to-coco``, ...), ``demo``,
``benchmark``, ``tune``. ``solov2.cli`` only parses arguments and calls these."""
