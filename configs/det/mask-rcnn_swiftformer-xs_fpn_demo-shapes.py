# The main job on a CPU: Mask R-CNN with SwiftFormer-XS on the generated
# "demo shapes" COCO dataset (5 classes, 256x256 images), generated into
# data/demo_shapes/ on first use. It is the COCO model; only what a 2-core CPU
# cannot afford is reduced, each change commented below.
_base_ = './mask-rcnn_swiftformer-xs_fpn_1x_coco.py'

data_root = 'data/demo_shapes/'
num_classes = 5
image_size = (256, 256)  # COCO: 1333x800

# Heads narrowed and RoIAlign sampled once per bin: the stride-4 FPN/RPN 3x3
# convolutions and RoIAlign's CPU kernel are most of a CPU training step.
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
        # still learning which shape it sees.
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

# A short schedule: a 5x higher lr than the COCO recipe (the neck and heads
# start from random weights here as there), the same optimiser, warm-up (50
# iterations; COCO: 500) and step decay; 5 epochs of 100 iterations, the lr
# divided by 10 for the last (COCO: 12 epochs, steps after 8 and 11). With the
# pretraining, the whole job fits 12 minutes on a 2-core CPU (README, Main jobs).
max_epochs = 5
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[4], gamma=0.1)
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
