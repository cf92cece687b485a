# Cityscapes read from its official layout (leftImg8bit/ + gtFine/), no conversion step.
data_root = 'data/cityscapes/'
data = dict(
    imgs_per_gpu=2,
    workers_per_gpu=2,
    train=dict(type='CityscapesDataset', root=data_root, split='train', flip_prob=0.5, filter_empty_gt=True),
    val=dict(type='CityscapesDataset', root=data_root, split='val', filter_empty_gt=False),
    test=dict(type='CityscapesDataset', root=data_root, split='val', filter_empty_gt=False),
)
