# The segmentation main job on a CPU: Semantic FPN with SwiftFormer-XS on the
# generated "demo scenes" (ADE20K layout, 6 classes + "other", 256x256),
# generated into data/demo_scenes/ on first use. The ADE20K model and
# pipeline; what a 2-core CPU cannot afford is reduced, each change commented.
_base_ = './fpn_swiftformer-xs_8xb4-40k_ade20k-512x512.py'

data_root = 'data/demo_scenes'
num_classes = 6
crop_size = (192, 192)  # ADE20K: 512x512 crops of ~2048x512 images
scale = (512, 256)  # ADE20K: (2048, 512)

# With the ADE20K widths most of a CPU training iteration is the 3x3 convs of
# the 256-channel FPN and the 128-channel head; halved here.
model = dict(
    data_preprocessor=dict(size=crop_size),
    # No ImageNet weights can be downloaded here: train from scratch.
    backbone=dict(init_cfg=None),
    neck=dict(out_channels=128),  # ADE20K: 256
    decode_head=dict(in_channels=[128] * 4, channels=64,  # ADE20K: 256 in, 128
                     num_classes=num_classes))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
dataset = dict(
    type='mmswift.DemoScenesDataset',
    data_root=data_root,
    generate=dict(num_train=300, num_val=50, size=256, seed=0))
train_dataloader = dict(
    batch_size=8,  # ADE20K: 4 per GPU x 8 GPUs
    num_workers=1,
    dataset=dict(_delete_=True, **dataset,
                 data_prefix=dict(img_path='images/training',
                                  seg_map_path='annotations/training'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    dataset=dict(_delete_=True, **dataset,
                 data_prefix=dict(img_path='images/validation',
                                  seg_map_path='annotations/validation'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader

# From scratch in minutes: a higher lr than ADE20K's 2e-4 (which fine-tunes
# ImageNet weights); the same optimiser and poly decay to 0.
# 450 iterations: the whole job (generation, training, testing) within its
# 10-minute budget; its mIoU and time: README, "Main jobs"
# (python tools/run_demo.py seg).
max_iters = 450
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=50, end=max_iters, by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=200, max_keep_ckpts=2))
auto_scale_lr = dict(base_batch_size=8)
randomness = dict(seed=0)

# Watch stage one form: its overlay on a fixed val image, every 200 iterations,
# in work_dirs/.../vis_data/vis_image/stage1_featmap_*.png
custom_hooks = _base_.robust_training_hooks + [
    dict(type='mmswift.FeatureMapVisHook', interval=200, stage=0)]
