data_root = 'data/coco/'
data = dict(
    imgs_per_gpu=2,
    workers_per_gpu=2,
    train=dict(type='CocoDataset', ann_file=data_root + 'annotations/instances_train2017.json',
               img_prefix=data_root + 'train2017/', flip_prob=0.5),
    val=dict(type='CocoDataset', ann_file=data_root + 'annotations/instances_val2017.json',
             img_prefix=data_root + 'val2017/'),
    test=dict(type='CocoDataset', ann_file=data_root + 'annotations/instances_val2017.json',
              img_prefix=data_root + 'val2017/'),
)
