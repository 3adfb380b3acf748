# Mask R-CNN with a SwiftFormer-L1 backbone, 1x schedule on COCO: the recipe of
# the SwiftFormer paper (after EfficientFormer / PoolFormer / PVT): AdamW
# lr 2e-4, weight decay 1e-4, 12 epochs with steps at 8 and 11, 500 iterations
# of linear warm-up, 1333x800 single scale, flip 0.5, 8 GPUs x 2 images.
# Paper: 41.2 box AP / 38.1 mask AP.
_base_ = [
    'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    '../_base_/robust_training.py',
]

# mmswift.models.roi_extractor: mmdet's RoI extractor with a RoIAlign that is
# faster on CPU (same results within 1e-5; CUDA runs mmcv's op; docs/speed.md)
custom_imports = dict(imports=['mmswift', 'mmswift.models.roi_extractor'],
                      allow_failed_imports=False)

variant = 'l1'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmswift.SwiftFormer',
        arch=variant,
        out_indices=(0, 1, 2, 3),
        # no out_channels_last here: the features stay NCHW, which every RoI
        # extractor reads, mmdet's stock one (mmcv's CPU RoIAlign) included
        drop_path_rate=0.0,
        init_cfg=dict(type='Pretrained',
                      checkpoint=f'checkpoints/swiftformer_{variant}.pth')),
    neck=dict(in_channels=[48, 96, 192, 384]),
    roi_head=dict(
        bbox_roi_extractor=dict(type='mmswift.SingleRoIExtractor'),
        mask_roi_extractor=dict(type='mmswift.SingleRoIExtractor')))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4))

# 12 epochs, steps at 8 and 11, 500 warm-up iterations: as mmdet's 1x (base).
# Batch 2 images x 8 GPUs; --auto-scale-lr rescales lr for other totals.
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Checkpoints written atomically: a job killed while saving never leaves a
# half-written file for --resume (the other robust-training hooks come from
# ../_base_/robust_training.py).
default_hooks = dict(checkpoint=dict(type='mmswift.AtomicCheckpointHook'))
