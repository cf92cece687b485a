# tiny_shapes.py with the demo's augmentation on: random flips and two random train scales; 8 images, so
# 4 iterations of 2 images per epoch.
_base_ = ['./tiny_shapes.py']
model = dict(transform=dict(train_scales=[(96, 96), (64, 64)]))
data = dict(train=dict(num_images=8, flip_prob=0.5))
