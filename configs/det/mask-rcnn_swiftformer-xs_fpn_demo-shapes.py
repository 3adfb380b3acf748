# The main job on a CPU: Mask R-CNN with SwiftFormer-XS on the generated
# "demo shapes" COCO dataset (5 classes, 256x256 images), generated into
# data/demo_shapes/ on first use. It is the COCO model; only what a 2-core CPU
# cannot afford is reduced, each change commented below.
_base_ = './mask-rcnn_swiftformer-xs_fpn_1x_coco.py'

data_root = 'data/demo_shapes/'
num_classes = 5
image_size = (256, 256)  # COCO: 1333x800

# Measured on the 2-core CPU, batch 4 at 256x256: 4.2 s per training
# iteration with the COCO head settings; 2.6 s after the RoI changes below
# (RoIAlign's CPU kernel was a third of the step); 1.3 s with 128-channel
# FPN and heads (3x3 convs over 256 channels were the rest); 1.3-1.4 s with
# 96 channels and one RoIAlign sample per bin (1.8 s with 128 and two);
# 1.16-1.21 s with the backbone's CPU training path (docs/speed.md); 0.90x
# of that with mmswift's CPU RoIAlign (one interleaved run).
head_channels = 96  # COCO: 256 (FPN, RPN, RoI extractors, bbox and mask heads)
# COCO: 0 (adaptive: dense for large RoIs); RoIs here span 9-28 stride-4
# pixels, so one bilinear sample per 7x7 (14x14 for masks) bin
roi_layer = dict(sampling_ratio=1)
# The backbone fine-tunes from the demo's pretraining, loaded through the same
# door as the official ImageNet checkpoint in the COCO configs: the official
# layout, converted on load. tools/pretrain_demo.py writes it (run_demo.py
# det runs that first); --cfg-options model.backbone.init_cfg=None trains
# from scratch.
pretrained = 'checkpoints/swiftformer-xs_demo-shape-crops.pth'
model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(out_channels=head_channels),
    rpn_head=dict(in_channels=head_channels, feat_channels=head_channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=head_channels, roi_layer=roi_layer),
        # COCO: a box regressor and a mask per class. One shared by all
        # classes learns from every positive RoI while the classifier is
        # still learning which shape it is. With the stronger pretraining
        # (67.6 % instead of 36.2 % top-1) and 128 channels, 4 epochs:
        # 0.536 / 0.557 bbox / segm mAP, against 0.143 / 0.155 before both
        # (the two changes were not measured apart; docs/demo.md)
        bbox_head=dict(in_channels=head_channels, num_classes=num_classes,
                       reg_class_agnostic=True),
        mask_roi_extractor=dict(out_channels=head_channels, roi_layer=roi_layer),
        mask_head=dict(in_channels=head_channels, conv_out_channels=head_channels,
                       num_classes=num_classes, class_agnostic=True)),
    train_cfg=dict(
        # COCO: 2000 pre-NMS / 1000 post-NMS proposals per image; images here
        # hold 2-6 objects
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        # COCO: 512 sampled RoIs per image (so up to 128 positives for the
        # mask head); 64 keeps 25% positives
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=300),  # COCO: 1000 / 1000
        rcnn=dict(max_per_img=50)))  # COCO: 100

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
dataset = dict(
    type='mmswift.DemoShapesDataset',
    data_root=data_root,
    generate=dict(num_train=400, num_val=50, size=256, seed=0))
train_dataloader = dict(
    batch_size=4,  # COCO: 2 per GPU x 8 GPUs
    num_workers=1,
    dataset=dict(_delete_=True, **dataset,
                 ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=8),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(_delete_=True, **dataset,
                 ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/'),
                 test_mode=True,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# A short schedule: a 5x higher lr than the COCO recipe, for the neck and
# heads that start from random weights here as there; same optimiser, warm-up
# (50 iterations; COCO: 500) and step decay. 4 epochs of 100 iterations: with
# pretraining and testing, 804 s for 0.518 / 0.545 bbox / segm mAP in the
# README's run (774 s, 0.549 / 0.561 and 837 s, 0.536 / 0.558 in the two runs
# before; 864 s, 0.510 / 0.518 before the CPU training path; 3 epochs, step
# after 2: 0.456 / 0.442; docs/demo.md).
max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[3], gamma=0.1)
]
auto_scale_lr = dict(base_batch_size=4)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)

# Watch stage one form: its overlay on a fixed val image, every epoch, in
# work_dirs/.../vis_data/vis_image/stage1_featmap_*.png
custom_hooks = _base_.robust_training_hooks + [
    dict(type='mmswift.FeatureMapVisHook', interval=100, stage=0)]
