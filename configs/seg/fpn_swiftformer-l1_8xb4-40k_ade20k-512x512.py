# Semantic FPN with a SwiftFormer-L1 backbone on ADE20K, 40k iterations: the
# recipe of the SwiftFormer paper (after PVT / PoolFormer / EfficientFormer):
# AdamW lr 2e-4, weight decay 1e-4, poly decay (power 0.9) to 0, 8 GPUs x 4
# images, 512x512 crops; test at (2048, 512) with both sides resized to a
# multiple of 32 (their AlignResize). Paper: 41.4 mIoU.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
    '../_base_/robust_training.py',
]

custom_imports = dict(imports=['mmswift'], allow_failed_imports=False)

variant = 'l1'
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,  # the base's ResNet weights; the backbone's init_cfg loads ours
    backbone=dict(
        _delete_=True,
        type='mmswift.SwiftFormer',
        arch=variant,
        out_indices=(0, 1, 2, 3),
        # CPU: the neck and head convolve in channels_last too (faster; docs/speed.md)
        out_channels_last=True,
        drop_path_rate=0.0,
        init_cfg=dict(type='Pretrained',
                      checkpoint=f'checkpoints/swiftformer_{variant}.pth')),
    neck=dict(in_channels=[48, 96, 192, 384], out_channels=256, num_outs=4),
    # FPNHead: 128 channels, SyncBN (from the base), 150 ADE20K classes
    decode_head=dict(channels=128, num_classes=150))

# AlignResize: keep-ratio resize to (2048, 512), then both sides up to a
# multiple of 32, the image these papers evaluated on.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=4)  # x 8 GPUs
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4),
    clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=40000, by_epoch=False)
]
# 40k iterations; evaluate and checkpoint every 4000 (schedule_40k); checkpoints
# are written atomically (a job killed while saving leaves no half-written file)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=4000)
default_hooks = dict(checkpoint=dict(
    type='mmswift.AtomicCheckpointHook', by_epoch=False, interval=4000))
auto_scale_lr = dict(enable=False, base_batch_size=32)
