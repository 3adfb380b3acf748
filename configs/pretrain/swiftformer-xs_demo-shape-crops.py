# The demo's ImageNet: a short classification pretraining of SwiftFormer-XS
# on generated 32x32 crops of the demo shapes (5 shapes + background, 20,000
# training crops, data/demo_shape_crops/, generated on first use). The
# detector then fine-tunes from it exactly as the COCO configs fine-tune the
# official ImageNet release: tools/pretrain_demo.py runs this config and
# writes the result in the official layout ({'model': ...}, patch_embed.*,
# network.N.*, norm, head, dist_head) to checkpoints/, where the demo
# detector's init_cfg loads it.
#
# Why crops of the demo shapes: no ImageNet weights can be downloaded here,
# and the pretraining has to teach, in a few minutes of CPU, what ImageNet
# teaches a real backbone -- the objects' shapes and textures against clutter
# -- from images the detector never sees, with image-level labels only.
# mmengine's registries (Runner, hooks, optimiser); mmswift's types scoped
default_scope = 'mmengine'
custom_imports = dict(imports=['mmswift'], allow_failed_imports=False)

data_root = 'data/demo_shape_crops/'
crop_size = 32
model = dict(
    type='mmswift.SwiftFormerClassifier',
    arch='xs',
    num_classes=6,
    drop_path_rate=0.0,  # ImageNet recipe: 0.0 for XS as well
    data_preprocessor=dict(
        type='ImgDataPreprocessor',
        # ImageNet's mean/std, as the detector's data preprocessor uses
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True))

dataset = dict(
    type='mmswift.DemoShapeCropsDataset',
    data_root=data_root,
    data_prefix=dict(img_path=''),
    generate=dict(num_train=20000, num_val=500, size=crop_size, seed=0))
train_dataloader = dict(
    batch_size=256,  # ImageNet recipe: 128 per GPU x 8 GPUs
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),  # iteration-based schedule
    dataset=dict(**dataset, ann_file='meta/train.txt',
                 pipeline=[dict(type='mmcv.LoadImageFromFile'),
                           dict(type='mmcv.RandomFlip', prob=0.5, direction='horizontal')]))
val_dataloader = dict(
    batch_size=100,
    num_workers=1,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**dataset, ann_file='meta/val.txt', test_mode=True,
                 pipeline=[dict(type='mmcv.LoadImageFromFile')]))
val_evaluator = dict(type='mmswift.Accuracy')
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# ImageNet recipe: AdamW, lr 1e-3 x batch/1024, 300 epochs, 5 warm-up epochs,
# cosine. Here about 5 passes over 20,000 crops (400 iterations): a larger lr
# for the short schedule, the same optimiser and decay. The pace is set by
# how many crops the backbone sees, hence 32x32 crops in batches of 256; the
# val top-1 is written beside the checkpoint (docs/demo.md).
max_iters = 400
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.025))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=30, end=max_iters, eta_min=1e-5)
]
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='mmswift.AtomicCheckpointHook', by_epoch=False,
                    interval=max_iters, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'))
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
